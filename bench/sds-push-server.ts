/**
 * The baseline peer for P3: a bare grpc-js server of Envoy's SecretDiscoveryService (StreamSecrets only) on a Unix
 * socket, in its own process like the agent, with no meshid code on its path: no attestation, cache, served state or
 * per-stream nonce. Each stream gets one response (of the push's size) to its first request (the benchmark's streams wait for it) and
 * its requests after that (the ACKs) are decoded and counted, nothing more.
 *
 *   node sds-push-server.js <socket-path> <message-bytes>
 *
 * A line `push <round>` on stdin is the trigger: the server reads the clock and its CPU time, encodes one
 * DiscoveryResponse of exactly <message-bytes> bytes (version_info and nonce are the round; the rest is one Secret's
 * worth of filler) and writes those bytes to every open stream. It answers on stdout with
 * `pushed <round> <epoch ms at the trigger> <streams>` at once and, when every stream has ACKed that round,
 * `acked <round> <CPU ms of this process from the trigger to the last ACK decoded>`.
 */
import fs from 'node:fs';
import readline from 'node:readline';
import * as grpc from '@grpc/grpc-js';
import { loadProto, protoRoot } from '../src/common/grpc/proto.js';
import { serviceOf, withResponseSerializers } from '../src/common/grpc/service.js';
import { BASE_SERVER_OPTIONS } from '../src/common/grpc/server-options.js';

const SDS_PROTO = 'envoy/service/secret/v3/sds.proto';
const SECRET_TYPE_URL = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret';

const socket = process.argv[2]!;
const messageBytes = Number(process.argv[3]);
if (!Number.isInteger(messageBytes) || messageBytes < 100) throw new Error(`usage: sds-push-server.js <socket> <message-bytes ≥ 100>, got ${process.argv[3]}`);

const DiscoveryResponse = protoRoot('envoy/service/discovery/v3/discovery.proto').lookupType('envoy.service.discovery.v3.DiscoveryResponse');

/**
 * A DiscoveryResponse for `round` of exactly `size` bytes: its one resource is filler, sized until the encoding fits.
 * Where a length prefix growing by a byte jumps over `size`, version_info takes the missing byte.
 */
function responseOf(round: string, size: number): Buffer {
  const encode = (filler: number, pad: number): Uint8Array =>
    DiscoveryResponse.encode(
      DiscoveryResponse.fromObject({
        version_info: round + '.'.repeat(pad),
        nonce: round,
        type_url: SECRET_TYPE_URL,
        resources: [{ type_url: SECRET_TYPE_URL, value: Buffer.alloc(filler, 0x41) }],
      }),
    ).finish();
  let filler = Math.max(0, size - encode(0, 0).length - 4);
  while (encode(filler + 1, 0).length <= size) filler++;
  for (let pad = 0; pad < 4; pad++) {
    const bytes = encode(filler, pad);
    if (bytes.length === size) return Buffer.from(bytes);
  }
  throw new Error(`no DiscoveryResponse of exactly ${size} bytes for round ${round}`);
}

interface Request {
  response_nonce?: string;
}

/** Responses are written as the bytes given (encoded once per push); requests are decoded as grpc-js does. */
const definition = withResponseSerializers(serviceOf(loadProto(SDS_PROTO), 'envoy.service.secret.v3.SecretDiscoveryService'), ['StreamSecrets'], () => (value) => value as Buffer);
const streams = new Set<grpc.ServerDuplexStream<Request, Buffer>>();
const first = responseOf('0', messageBytes);

let round = '';
let acked = 0;
let cpuAtTrigger: NodeJS.CpuUsage | undefined;

const server = new grpc.Server({ ...BASE_SERVER_OPTIONS, interceptors: [] });
server.addService(definition, {
  StreamSecrets(call: grpc.ServerDuplexStream<Request, Buffer>): void {
    let answered = false;
    call.on('data', (request: Request) => {
      if (!answered) {
        answered = true;
        streams.add(call);
        call.write(first);
        return;
      }
      if (request.response_nonce !== round || cpuAtTrigger === undefined) return;
      if (++acked < streams.size) return;
      const cpu = process.cpuUsage(cpuAtTrigger);
      cpuAtTrigger = undefined;
      process.stdout.write(`acked ${round} ${((cpu.user + cpu.system) / 1000).toFixed(3)}\n`);
    });
    const drop = (): void => void streams.delete(call);
    call.on('cancelled', drop);
    call.on('error', drop);
    call.on('close', drop);
  },
});

function pushToEveryStream(name: string): void {
  const at = performance.timeOrigin + performance.now();
  cpuAtTrigger = process.cpuUsage();
  round = name;
  acked = 0;
  const bytes = responseOf(round, messageBytes);
  for (const call of streams) call.write(bytes);
  process.stdout.write(`pushed ${round} ${at.toFixed(3)} ${streams.size}\n`);
}

readline.createInterface({ input: process.stdin }).on('line', (line) => {
  const [command, name] = line.split(' ');
  if (command === 'push' && name !== undefined) pushToEveryStream(name);
});

fs.rmSync(socket, { force: true });
server.bindAsync(`unix://${socket}`, grpc.ServerCredentials.createInsecure(), (err) => {
  if (err) throw err;
  process.stdout.write('ready\n');
});
process.on('SIGTERM', () => {
  server.forceShutdown();
  process.exit(0);
});
