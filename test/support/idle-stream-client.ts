/**
 * A local process holding HTTP/2 streams open on the agent socket that never send a message (the HEADERS of a
 * FetchX509SVID and nothing more, as /tmp/flood/idle-streams.mjs did to grow the agent), for the call-limit tests.
 * Usage: node idle-stream-client.js SOCKET. Reads commands on stdin, one a line, and answers each with one JSON line
 * on stdout once the agent has handled everything sent before it (two PING round trips: the second is read only after
 * the agent wrote what it answered to the first's batch):
 *   open N [no-header] [timeout=T] [sds]
 *                       opens N streams on its one connection (no-header: without workload.spiffe.io, which the
 *                       agent refuses at once; timeout=T: with grpc-timeout T, e.g. 200m, which this client then
 *                       ignores, as a client may; sds: SDS StreamSecrets calls instead, each sending a request for
 *                       the caller's default SVID, and never ending its side);
 *                       answers { refused: [{ code, details }], closedByAgent, refusedStreams, open, goaway } for
 *                       them: refusedStreams were reset REFUSED_STREAM without a gRPC status, and goaway says whether
 *                       the agent has sent the connection a GOAWAY so far
 *   statuses            waits until every stream opened so far has its gRPC status; answers { codes, withMessages,
 *                       open }: each status code and how many streams had it, how many of them got a message first,
 *                       and how many streams are still open
 *   cancel              cancels every stream still open (RST_STREAM CANCEL); answers { cancelled }
 *   settings            answers { maxConcurrentStreams } as the agent advertised it
 */
import http2 from 'node:http2';
import net from 'node:net';
import readline from 'node:readline';
import { protoRoot } from '../../src/common/grpc/proto.js';

const [socketPath] = process.argv.slice(2);
const session = http2.connect('http://localhost', { createConnection: () => net.connect(socketPath!) });
session.on('error', (err) => {
  process.stderr.write(`idle-stream-client: ${err.message}\n`);
  process.exit(1);
});
const open = new Set<http2.ClientHttp2Stream>();
/** Every stream opened, with its gRPC status once it has one and whether a message came before it. */
const opened: Array<{ status: Promise<number>; messages: () => number }> = [];
let goaway = false;
session.on('goaway', () => (goaway = true));

async function settled(): Promise<void> {
  for (let i = 0; i < 2; i++) await new Promise<void>((resolve, reject) => session.ping((err) => (err ? reject(err) : resolve())));
  // The frames read with the last PING's answer have their events emitted by now.
  await new Promise((resolve) => setImmediate(resolve));
}

/** An SDS request for the caller's default SVID, gRPC-framed (uncompressed, its length, the message). */
function sdsRequest(): Buffer {
  const type = protoRoot('envoy/service/secret/v3/sds.proto').lookupType('envoy.service.discovery.v3.DiscoveryRequest');
  const message = type.encode(type.fromObject({ node: { id: 'idle' }, resource_names: ['default'], type_url: 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret' })).finish();
  const framed = Buffer.alloc(5 + message.length);
  framed.writeUInt32BE(message.length, 1);
  framed.set(message, 5);
  return framed;
}

async function openStreams(count: number, header: boolean, timeout: string | undefined, sds: boolean): Promise<unknown> {
  const refused: Array<{ code: number; details: string }> = [];
  let closedByAgent = 0;
  let refusedStreams = 0;
  const batch: http2.ClientHttp2Stream[] = [];
  for (let i = 0; i < count; i++) {
    const stream = session.request(
      {
        ':method': 'POST',
        ':path': sds ? '/envoy.service.secret.v3.SecretDiscoveryService/StreamSecrets' : '/SpiffeWorkloadAPI/FetchX509SVID',
        'content-type': 'application/grpc',
        te: 'trailers',
        ...(header ? { 'workload.spiffe.io': 'true' } : {}),
        ...(timeout !== undefined ? { 'grpc-timeout': timeout } : {}),
      },
      { endStream: false },
    );
    if (sds) stream.write(sdsRequest());
    let answered = false;
    let messages = 0;
    let statusOf: (code: number) => void = () => undefined;
    opened.push({ status: new Promise((resolve) => (statusOf = resolve)), messages: () => messages });
    stream.on('response', (headers) => {
      const code = headers['grpc-status'];
      answered = true;
      if (code !== undefined) {
        refused.push({ code: Number(code), details: decodeURIComponent(String(headers['grpc-message'] ?? '')) });
        statusOf(Number(code));
      }
    });
    stream.on('data', () => messages++);
    stream.on('trailers', (trailers) => statusOf(Number(trailers['grpc-status'])));
    stream.on('error', () => undefined);
    stream.on('close', () => {
      if (!open.delete(stream)) return;
      closedByAgent++;
      if (!answered && stream.rstCode === http2.constants.NGHTTP2_REFUSED_STREAM) refusedStreams++;
    });
    open.add(stream);
    batch.push(stream);
  }
  await settled();
  return { refused, closedByAgent, refusedStreams, open: batch.filter((s) => open.has(s)).length, goaway };
}

async function cancelAll(): Promise<unknown> {
  const cancelled = open.size;
  // After a GOAWAY the session closes itself once its last stream is gone: its close is the sign the agent has them.
  const closing = session.closed ? new Promise((resolve) => session.once('close', resolve)) : undefined;
  for (const stream of open) stream.close(http2.constants.NGHTTP2_CANCEL);
  open.clear();
  await (closing ?? settled());
  return { cancelled };
}

async function answer(line: string): Promise<unknown> {
  const [command, arg, ...flags] = line.trim().split(/\s+/);
  if (command === 'open') {
    const timeout = flags.find((f) => f.startsWith('timeout='))?.slice('timeout='.length);
    return openStreams(Number(arg), !flags.includes('no-header'), timeout, flags.includes('sds'));
  }
  if (command === 'cancel') return cancelAll();
  if (command === 'statuses') {
    const codes: Record<number, number> = {};
    let withMessages = 0;
    for (const { status, messages } of opened) {
      const code = await status;
      codes[code] = (codes[code] ?? 0) + 1;
      if (messages() > 0) withMessages++;
    }
    // What the agent did after the last status (a reset) has arrived by now.
    await settled();
    return { codes, withMessages, open: open.size };
  }
  if (command === 'settings') {
    await settled();
    return { maxConcurrentStreams: session.remoteSettings.maxConcurrentStreams };
  }
  throw new Error(`unknown command "${line}"`);
}

let pending = Promise.resolve();
readline.createInterface({ input: process.stdin }).on('line', (line) => {
  pending = pending.then(async () => {
    process.stdout.write(`${JSON.stringify(await answer(line))}\n`);
  });
});
process.stdin.on('end', () => void pending.then(() => session.destroy()));
