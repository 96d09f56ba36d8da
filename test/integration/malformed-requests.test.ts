/**
 * Hand-made request bytes against every gRPC service of a real server and agent: the Workload API, SDS, health and
 * reflection on the agent socket, the admin API on the server's Unix socket, the agent API over TLS. Bytes that are
 * no valid protobuf encoding of the request are INVALID_ARGUMENT naming the problem (never INTERNAL, never decoded
 * into something the client did not send), unknown fields are ignored, and real clients keep working.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { Cluster, startClusterWithAgent, type AgentProcess } from '../support/cluster.js';
import { delimited, message, tag, varint, varintField, type Bytes } from '../support/wire-bytes.js';
import { raw } from '../support/raw-method.js';

const SPIFFE_ID = 'spiffe://example.org/malformed-test';
let cluster: Cluster;
let agent: AgentProcess;

before(async () => {
  ({ cluster, agent } = await startClusterWithAgent('meshid-malformed-', [SPIFFE_ID]));
});

after(async () => {
  await cluster?.cleanup();
});

type Kind = 'unary' | 'server-stream' | 'bidi';

interface Target {
  address: string;
  credentials: grpc.ChannelCredentials;
  /** Sends `workload.spiffe.io: true`, as every Workload API client must. */
  workloadHeader?: boolean;
}

const agentSocket = (): Target => ({ address: `unix://${agent.socketPath}`, credentials: grpc.credentials.createInsecure(), workloadHeader: true });
const adminSocket = (): Target => ({ address: `unix://${cluster.server.adminSocket}`, credentials: grpc.credentials.createInsecure() });
/** The agent API, as a client that has no agent SVID yet (as before Attest): TLS, server checked against the bundle. */
const agentApi = (): Target => ({
  address: cluster.server.address(),
  credentials: grpc.credentials.createSsl(Buffer.from(cluster.bundlePem), null, null, {
    checkServerIdentity: (_host, cert) => (cert.subjectaltname === 'URI:spiffe://example.org/meshid/server' ? undefined : new Error(cert.subjectaltname)),
  }),
});

/** One call with `body` as the request's bytes, as they go on the wire; resolves with the call's status. */
async function rawCall(target: Target, path: string, kind: Kind, body: Bytes): Promise<grpc.StatusObject & { replies: Buffer[] }> {
  const client = new grpc.Client(target.address, target.credentials);
  const md = new grpc.Metadata();
  if (target.workloadHeader === true) md.set('workload.spiffe.io', 'true');
  const bytes = Buffer.from([...body]);
  const replies: Buffer[] = [];
  try {
    return await new Promise((resolve) => {
      let call: grpc.ClientUnaryCall | grpc.ClientReadableStream<Buffer> | grpc.ClientDuplexStream<Buffer, Buffer>;
      if (kind === 'unary') {
        call = client.makeUnaryRequest(path, raw, raw, bytes, md, (_err, reply) => {
          if (reply) replies.push(reply);
        });
      } else if (kind === 'server-stream') {
        call = client.makeServerStreamRequest(path, raw, raw, bytes, md);
      } else {
        const duplex = client.makeBidiStreamRequest(path, raw, raw, md);
        duplex.write(bytes);
        call = duplex;
      }
      if (kind !== 'unary') {
        const stream = call as grpc.ClientReadableStream<Buffer>;
        // The first reply is proof enough that the request was accepted; streams stay open otherwise.
        stream.on('data', (reply: Buffer) => {
          replies.push(reply);
          call.cancel();
        });
        stream.on('error', () => undefined);
      }
      call.on('status', (status: grpc.StatusObject) => resolve({ ...status, replies }));
    });
  } finally {
    client.close();
  }
}

async function assertRefused(target: Target, path: string, kind: Kind, body: Bytes, details: RegExp): Promise<void> {
  const status = await rawCall(target, path, kind, body);
  assert.equal(grpc.status[status.code], 'INVALID_ARGUMENT', `${path}: ${status.details}`);
  assert.match(status.details, details, path);
  assert.equal(status.replies.length, 0, `${path} answered`);
}

const BAD_UTF8 = [0x61, 0xff, 0x62];
/** A tag that protobufjs, reading 32 bits of it, takes for field `field`: the field number is 2^29 + field. */
const aliasOf = (field: number, payload: string): number[] => delimited(2 ** 29 + field, payload);

test('Workload API: malformed requests are INVALID_ARGUMENT naming the field and problem, unary and streaming', async () => {
  const t = agentSocket();
  // A string whose length runs past the end: protobufjs cut it short and served the shorter one.
  await assertRefused(t, '/SpiffeWorkloadAPI/FetchJWTSVID', 'unary', message(delimited(1, 'aud'), tag(2, 2), varint(64), [...Buffer.from(SPIFFE_ID)]),
    /^malformed request: JWTSVIDRequest\.spiffe_id \(field 2\): length 64 runs past the end of the message \(35 bytes left\)$/);
  await assertRefused(t, '/SpiffeWorkloadAPI/FetchJWTSVID', 'unary', message(delimited(1, 'aud'), delimited(2, [...Buffer.from(SPIFFE_ID), 0xff])),
    /^malformed request: JWTSVIDRequest\.spiffe_id \(field 2\) is not valid UTF-8$/);
  await assertRefused(t, '/SpiffeWorkloadAPI/FetchJWTSVID', 'unary', message(delimited(1, 'aud'), aliasOf(2, SPIFFE_ID)),
    /^malformed request: JWTSVIDRequest: field number 536870914 at byte 5 is above the maximum, 536870911$/);
  await assertRefused(t, '/SpiffeWorkloadAPI/ValidateJWTSVID', 'unary', message(varintField(1, 3), delimited(2, 'x.y.z')),
    /^malformed request: ValidateJWTSVIDRequest\.audience \(field 1\) has wire type varint \(0\), expected length-delimited \(2\)$/);
  await assertRefused(t, '/SpiffeWorkloadAPI/FetchX509SVID', 'server-stream', [0x78, 0x80], /^malformed request: X509SVIDRequest: unknown field 15: the value is a truncated varint$/);
  await assertRefused(t, '/SpiffeWorkloadAPI/FetchJWTBundles', 'server-stream', delimited(0, 'x'), /field number 0 at byte 0/);
});

test('SDS, health and reflection on the agent socket refuse malformed requests the same way', async () => {
  const t = agentSocket();
  const badNode = delimited(2, delimited(6, BAD_UTF8));
  await assertRefused(t, '/envoy.service.secret.v3.SecretDiscoveryService/StreamSecrets', 'bidi', badNode,
    /^malformed request: envoy\.service\.discovery\.v3\.DiscoveryRequest\.node\.user_agent_name \(field 6\) is not valid UTF-8$/);
  await assertRefused(t, '/envoy.service.secret.v3.SecretDiscoveryService/DeltaSecrets', 'bidi', [...tag(3, 2), ...varint(9), 0x61],
    /DeltaDiscoveryRequest\.resource_names_subscribe \(field 3\): length 9 runs past the end/);
  await assertRefused(t, '/envoy.service.secret.v3.SecretDiscoveryService/FetchSecrets', 'unary', delimited(3, BAD_UTF8),
    /DiscoveryRequest\.resource_names \(field 3\) is not valid UTF-8/);
  await assertRefused(t, '/grpc.health.v1.Health/Check', 'unary', [0x0a, 0x80], /^malformed request: grpc\.health\.v1\.HealthCheckRequest\.service \(field 1\): the length at byte 1 is a truncated varint$/);
  await assertRefused(t, '/grpc.health.v1.Health/Watch', 'server-stream', delimited(1, BAD_UTF8), /HealthCheckRequest\.service \(field 1\) is not valid UTF-8/);
  await assertRefused(t, '/grpc.reflection.v1.ServerReflection/ServerReflectionInfo', 'bidi', delimited(4, BAD_UTF8),
    /^malformed request: grpc\.reflection\.v1\.ServerReflectionRequest\.file_containing_symbol \(field 4\) is not valid UTF-8$/);
});

test('admin API: an entry whose selector or SPIFFE ID is not what was sent is refused and not stored', async () => {
  const t = adminSocket();
  const before = await cluster.admin.call('Entries', 'ListEntries', {});
  const selector = (value: Bytes): number[] => delimited(4, [...delimited(1, 'unix'), ...delimited(2, value)]);
  const entry = (...parts: number[][]): number[] => delimited(1, [...delimited(3, Cluster.nodeAlias), ...parts.flat()]);
  await assertRefused(t, '/meshid.admin.v1.Entries/CreateEntries', 'unary', entry(delimited(2, 'spiffe://example.org/s'), selector([...Buffer.from('uid:1000'), 0xff])),
    /^malformed request: meshid\.admin\.v1\.CreateEntriesRequest\.entries\.selectors\.value \(field 2\) is not valid UTF-8$/);
  await assertRefused(t, '/meshid.admin.v1.Entries/CreateEntries', 'unary', entry(aliasOf(2, 'spiffe://example.org/aliased'), selector(Buffer.from('uid:1000'))),
    /field number 536870914 .* is above the maximum/);
  await assertRefused(t, '/meshid.admin.v1.Entries/CreateEntries', 'unary', entry(delimited(2, 'spiffe://example.org/s'), [...tag(4, 2), ...varint(100)], delimited(2, 'uid:1000')),
    /CreateEntriesRequest\.entries\.selectors \(field 4\): length 100 runs past the end of the message/);
  await assertRefused(t, '/grpc.health.v1.Health/Check', 'unary', [0x0f], /^malformed request: grpc\.health\.v1\.HealthCheckRequest\.service \(field 1\): invalid wire type 7$/);
  const after = await cluster.admin.call('Entries', 'ListEntries', {});
  assert.deepEqual(after.entries?.map((e) => e.id), before.entries?.map((e) => e.id));
});

test('agent API over TLS: malformed requests are INVALID_ARGUMENT before authentication, unary and streaming', async () => {
  const t = agentApi();
  await assertRefused(t, '/meshid.agent.v1.Node/Attest', 'unary', delimited(1, BAD_UTF8), /^malformed request: meshid\.agent\.v1\.AttestRequest\.join_token \(field 1\) is not valid UTF-8$/);
  // Calls that need the agent SVID are refused for its absence before their request is read at all
  // (agent-call-gate.ts); agent-api-undecoded-refusal.test.ts has the rest.
  const sync = await rawCall(t, '/meshid.agent.v1.Node/Sync', 'server-stream', [0x80]);
  assert.equal(grpc.status[sync.code], 'UNAUTHENTICATED', sync.details);
  await assertRefused(t, '/grpc.health.v1.Health/Check', 'unary', delimited(1, BAD_UTF8), /HealthCheckRequest\.service \(field 1\) is not valid UTF-8/);
});

test('Workload API and SDS: name lists past what their handlers accept are refused while the bytes are walked, before decoding', async () => {
  const t = agentSocket();
  const strings = (field: number, n: number): number[] => Array.from({ length: n }, (_, i) => delimited(field, `n${i}`)).flat();
  const versions = (n: number): number[] => Array.from({ length: n }, (_, i) => delimited(5, [...delimited(1, `n${i}`), ...delimited(2, 'v')])).flat();
  const secretType = delimited(4, 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret');
  const deltaSecretType = delimited(2, 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret');
  const sdsPath = (method: string): string => `/envoy.service.secret.v3.SecretDiscoveryService/${method}`;
  // The handlers' own refusals read differently ("too many audiences: 65", "resource_names has 1001 names"): these
  // name the field as the walk does, so they were refused before protobufjs decoded a value.
  await assertRefused(t, '/SpiffeWorkloadAPI/FetchJWTSVID', 'unary', strings(1, 65),
    /^malformed request: JWTSVIDRequest\.audience \(field 1\) holds more than 64 values, the most one request may carry$/);
  for (const [method, kind] of [['StreamSecrets', 'bidi'], ['FetchSecrets', 'unary']] as const) {
    await assertRefused(t, sdsPath(method), kind, message(secretType, strings(3, 1001)),
      /^malformed request: envoy\.service\.discovery\.v3\.DiscoveryRequest\.resource_names \(field 3\) holds more than 1000 values, the most one request may carry$/);
  }
  for (const [body, field] of [
    [strings(3, 1001), 'resource_names_subscribe \\(field 3\\)'],
    [strings(4, 1001), 'resource_names_unsubscribe \\(field 4\\)'],
    [versions(1001), 'initial_resource_versions \\(field 5\\)'],
  ] as const) {
    await assertRefused(t, sdsPath('DeltaSecrets'), 'bidi', message(deltaSecretType, body),
      new RegExp(`^malformed request: envoy\\.service\\.discovery\\.v3\\.DeltaDiscoveryRequest\\.${field} holds more than 1000 values, the most one request may carry$`));
  }
  // At the limits the requests are decoded and reach the handlers: a token for 64 audiences, and no secret named n0.
  const jwt = await rawCall(t, '/SpiffeWorkloadAPI/FetchJWTSVID', 'unary', strings(1, 64));
  assert.equal(grpc.status[jwt.code], 'OK', jwt.details);
  const fetch = await rawCall(t, sdsPath('FetchSecrets'), 'unary', message(secretType, strings(3, 1000)));
  assert.equal(grpc.status[fetch.code], 'NOT_FOUND', fetch.details);
  assert.match(fetch.details, /^no secret for "n0", .* and 995 more is available to this caller$/);
});

test('a request holding more values in all than its type allows is refused before decoding, on the agent socket and at Attest', async () => {
  const t = agentSocket();
  const secretType = delimited(4, 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret');
  const fetchSecrets = '/envoy.service.secret.v3.SecretDiscoveryService/FetchSecrets';
  // An Envoy-like Node: 700 extensions (name, category, a type URL) and 1000 metadata strings, ~7,000 values: served.
  const extension = (i: number): number[] => delimited(9, [...delimited(1, `envoy.filters.http.f${i}`), ...delimited(2, 'envoy.filters.http'), ...delimited(6, `type.googleapis.com/f${i}`)]);
  const metadataLeaf = (i: number): number[] => delimited(1, [...delimited(1, `ISTIO_META_${i}`), ...delimited(2, delimited(3, `value ${i}`))]);
  const envoyNode = delimited(2, [
    ...delimited(1, 'sidecar~10.0.0.1~pod.ns'),
    ...delimited(3, Array.from({ length: 1000 }, (_, i) => metadataLeaf(i)).flat()),
    ...Array.from({ length: 700 }, (_, i) => extension(i)).flat(),
  ]);
  const envoy = await rawCall(t, fetchSecrets, 'unary', message(envoyNode, delimited(3, 'no-such-secret'), secretType));
  assert.equal(grpc.status[envoy.code], 'NOT_FOUND', envoy.details);
  // Fifty thousand empty client features, 100 KB on the wire, are refused naming the limit.
  const features = message(delimited(2, Array.from({ length: 50_000 }, () => delimited(10, '')).flat()), secretType);
  await assertRefused(t, fetchSecrets, 'unary', features,
    /^malformed request: envoy\.service\.discovery\.v3\.DiscoveryRequest holds more than 50000 values in all \(fields at any depth, each list element counted\), the most one request may carry$/);
  // Unknown fields count too: a Workload API request is small.
  await assertRefused(t, '/SpiffeWorkloadAPI/FetchJWTSVID', 'unary', message(Array.from({ length: 1000 }, () => varintField(15, 1)).flat(), delimited(1, 'aud')),
    /^malformed request: JWTSVIDRequest holds more than 1000 values in all/);
  // The agent's log says so too, naming the uid that sent it (one line per uid a minute: the first refusal of this
  // file's tests, whichever it was).
  const line = await agent.waitForLog(/refused a request that is not a valid encoding of its type/);
  assert.match(line, new RegExp(`"uid":${process.getuid!()}[,}]`));
  assert.match(line, /"reason":"malformed request: /);
  // Attest, open to anyone who reaches the server's port, before the join token is looked at.
  await assertRefused(agentApi(), '/meshid.agent.v1.Node/Attest', 'unary', message(Array.from({ length: 1001 }, () => varintField(15, 1)).flat()),
    /^malformed request: meshid\.agent\.v1\.AttestRequest holds more than 1000 values in all/);
});

test('a request over the 4 MiB receive limit is RESOURCE_EXHAUSTED, as gRPC specifies', async () => {
  const status = await rawCall(agentSocket(), '/SpiffeWorkloadAPI/FetchJWTSVID', 'unary', delimited(1, Buffer.alloc(4 * 1024 * 1024, 0x61)));
  assert.equal(grpc.status[status.code], 'RESOURCE_EXHAUSTED', status.details);
  assert.match(status.details, /larger than max/);
});

test('unknown fields are ignored, and real clients are served after all of the above', async () => {
  // Unknown fields of every wire type around a valid audience: a JWT-SVID comes back.
  const jwt = await rawCall(agentSocket(), '/SpiffeWorkloadAPI/FetchJWTSVID', 'unary',
    message(varintField(15, 1), delimited(16, BAD_UTF8), tag(17, 3), varintField(1, 2), tag(17, 4), tag(18, 5), [1, 2, 3, 4], delimited(1, 'aud')));
  assert.equal(grpc.status[jwt.code], 'OK', jwt.details);
  assert.ok(jwt.replies[0]!.includes(Buffer.from(SPIFFE_ID)));
  const health = await rawCall(adminSocket(), '/grpc.health.v1.Health/Check', 'unary', varintField(15, 1));
  assert.equal(grpc.status[health.code], 'OK', health.details);
  const c = agent.client(10_000);
  try {
    assert.equal((await c.fetchX509Svid()).svids[0]!.spiffe_id, SPIFFE_ID);
  } finally {
    c.close();
  }
  const entries = await cluster.admin.call('Entries', 'ListEntries', {});
  assert.ok(entries.entries?.some((e) => e.spiffe_id === SPIFFE_ID));
});
