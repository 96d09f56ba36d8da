/**
 * Interop with a gRPC stack meshid does not share code with: Google's C-core through Python's grpcio (the stack of
 * py-spiffe and of Envoy's google_grpc client), with protoc's code for the messages and `cryptography` reading the
 * certificates (test/interop/grpc_core_client.py). Needs python3-grpcio, python3-protobuf, python3-cryptography and
 * protobuf-compiler (Debian packages; .ci/run installs them); without them the tests are skipped (interopSkip).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { X509Certificate, createPrivateKey, createPublicKey, verify } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { packageRoot } from '../../src/common/paths.js';
import { startClusterWithAgent, type AgentProcess, type Cluster } from '../support/cluster.js';
import { opensslVerify } from '../support/openssl.js';
import { interopSkip } from '../support/interop.js';
import { publicTempDir } from '../support/peer-process.js';

const TD = 'example.org';
/** Bundle maps are keyed by the trust domain's SPIFFE ID. */
const TD_ID = `spiffe://${TD}`;
const ID = `spiffe://${TD}/interop/grpc-core`;
const CLIENT = path.join(packageRoot, 'test/interop/grpc_core_client.py');
const PROTOS = [
  'workload/workload.proto', 'envoy/service/discovery/v3/discovery.proto', 'envoy/extensions/transport_sockets/tls/v3/secret.proto',
  'envoy/extensions/transport_sockets/tls/v3/common.proto', 'envoy/extensions/transport_sockets/tls/v3/tls_spiffe_validator_config.proto',
  'envoy/config/core/v3/base.proto', 'envoy/config/core/v3/extension.proto', 'envoy/type/matcher/v3/string.proto',
  'envoy/type/v3/semantic_version.proto', 'google/rpc/status.proto',
];

/** Debian's python3 first: a pyenv or venv python3 on PATH usually lacks the Debian-packaged grpcio. */
function findPython(): string | undefined {
  return ['/usr/bin/python3', 'python3'].find(
    (p) => spawnSync(p, ['-c', 'import grpc, google.protobuf, cryptography'], { stdio: 'ignore' }).status === 0,
  );
}

const python = findPython();
const protoc = spawnSync('protoc', ['--version'], { stdio: 'ignore' }).status === 0 && fs.existsSync('/usr/include/google/protobuf/any.proto');
const skip = interopSkip(
  'grpc-core-client', python !== undefined && protoc, 'python3-grpcio, python3-protobuf, python3-cryptography, protobuf-compiler and libprotobuf-dev',
);

let cluster: Cluster;
let agent: AgentProcess;
let generated: string;
let entryId: string;

before(async () => {
  if (skip) return;
  // World-readable: one test runs the client as another user.
  generated = publicTempDir('meshid-grpc-core-');
  const r = spawnSync('protoc', [`-I${path.join(packageRoot, 'proto')}`, '-I/usr/include', `--python_out=${generated}`, ...PROTOS], { encoding: 'utf8' });
  assert.equal(r.status, 0, `protoc rejected meshid's protos: ${r.stderr}`);
  spawnSync('chmod', ['-R', 'a+rX', generated]);
  let entryIds: string[];
  ({ cluster, agent, entryIds } = await startClusterWithAgent('meshid-grpc-core-', [ID]));
  entryId = entryIds[0]!;
});

after(async () => {
  if (skip) return;
  await cluster?.cleanup();
  fs.rmSync(generated, { recursive: true, force: true });
});

interface Run {
  lines: Array<Record<string, unknown>>;
  stderr: string;
}

/** Runs one scenario; `onLine` may answer on the client's stdin. */
async function runClient(
  scenario: string,
  opts: { uid?: number; onLine?: (line: Record<string, unknown>, stdin: NodeJS.WritableStream) => Promise<void> | void } = {},
): Promise<Run> {
  const child = spawn(python!, [CLIENT, generated, agent.socketPath, scenario, ID], {
    stdio: ['pipe', 'pipe', 'pipe'],
    ...(opts.uid !== undefined ? { uid: opts.uid, gid: opts.uid } : {}),
  });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const lines: Array<Record<string, unknown>> = [];
  const pending: Array<Promise<void> | void> = [];
  readline.createInterface({ input: child.stdout! }).on('line', (l) => {
    const line = JSON.parse(l) as Record<string, unknown>;
    lines.push(line);
    if (opts.onLine) pending.push(opts.onLine(line, child.stdin!));
  });
  const [code] = (await once(child, 'close')) as [number | null];
  await Promise.all(pending);
  assert.equal(code, 0, `client exited ${code}: ${stderr}`);
  return { lines, stderr };
}

const fromHex = (h: unknown): Buffer => Buffer.from(h as string, 'hex');

test('FetchX509SVID over C-core: the SVID, a key that matches it, a chain openssl verifies strictly', { skip }, async () => {
  const { lines: [out] } = await runClient('x509');
  const svids = out!['svids'] as Array<Record<string, unknown>>;
  assert.equal(svids.length, 1);
  const svid = svids[0]!;
  assert.equal(svid['spiffe_id'], ID);
  assert.deepEqual(svid['uri_sans'], [ID]);
  assert.equal(svid['key_matches_leaf'], true);
  const chain = (svid['chain'] as string[]).map(fromHex);
  const bundle = (svid['bundle'] as string[]).map(fromHex);
  const r = opensslVerify({ roots: bundle, intermediates: chain.slice(1), leaf: chain[0]! });
  assert.ok(r.ok, r.output);
});

// grpc-java (NettyChannelBuilder.forAddress(DomainSocketAddress), so java-spiffe) sends the socket's path as :authority
// over a Unix socket; grpc-go sends "localhost", C-core since 1.57 the percent-encoded path. Node's nghttp2 refuses a
// "/" in :authority and resets the stream (PROTOCOL_ERROR) before grpc-js sees the call: java-spiffe gets INTERNAL on
// every call. grpc-java-client.test.ts dials through a TCP relay (no epoll JNI in Debian) and so never sends it.
test('a client whose :authority is the socket path, as grpc-java sends over a Unix socket, is served', { skip }, async () => {
  const { lines: [out] } = await runClient('x509-path-authority');
  assert.equal(out!['error'], undefined, JSON.stringify(out));
  assert.equal((out!['svids'] as unknown[]).length, 1);
});

test('a client whose :authority is the percent-encoded socket path, as C-core since 1.57 (py-spiffe) sends, is served', { skip }, async () => {
  const { lines: [out] } = await runClient('x509-encoded-path-authority');
  assert.equal(out!['error'], undefined, JSON.stringify(out));
  assert.equal((out!['svids'] as unknown[]).length, 1);
});

test('a call without the security header is InvalidArgument over C-core too', { skip }, async () => {
  const { lines: [out] } = await runClient('x509-without-header');
  assert.equal(out!['error'], 'INVALID_ARGUMENT');
  assert.match(out!['details'] as string, /workload\.spiffe\.io/);
});

test('a caller no entry matches gets PermissionDenied over C-core (client run as uid 65534)', { skip }, async () => {
  const { lines: [out] } = await runClient('x509', { uid: 65534 });
  assert.equal(out!['error'], 'PERMISSION_DENIED');
});

test('FetchX509Bundles over C-core: the own trust domain with the root the SVID chains to', { skip }, async () => {
  const [{ lines: [bundles] }, { lines: [svid] }] = [await runClient('x509-bundles'), await runClient('x509')];
  const own = (bundles!['bundles'] as Record<string, string[]>)[TD_ID];
  assert.ok(own !== undefined && own.length > 0, JSON.stringify(bundles));
  assert.deepEqual(own, ((svid!['svids'] as Array<Record<string, unknown>>)[0]!['bundle'] as string[]));
});

test('JWT-SVIDs over C-core: fetched, validated for their audience only, and verifiable with the served JWKS', { skip }, async () => {
  const { lines: [out] } = await runClient('jwt');
  assert.equal(out!['svid_spiffe_id'], ID);
  assert.equal(out!['validated_spiffe_id'], ID);
  const claims = out!['claims'] as Record<string, unknown>;
  assert.equal(claims['sub'], ID);
  assert.deepEqual(claims['aud'], ['interop']);
  assert.equal(out!['wrong_audience'], 'INVALID_ARGUMENT');
  // The token's kid names a key of the served JWKS, and that key verifies its signature.
  const [header, payload, signature] = (out!['token'] as string).split('.');
  const kid = (JSON.parse(Buffer.from(header!, 'base64url').toString()) as { kid: string }).kid;
  const jwks = (out!['jwks'] as Record<string, { keys: Array<Record<string, string>> }>)[TD_ID]!;
  const jwk = jwks.keys.find((k) => k['kid'] === kid);
  assert.ok(jwk, `kid ${kid} is in the JWKS`);
  const ok = verify('sha256', Buffer.from(`${header}.${payload}`), { key: createPublicKey({ key: jwk, format: 'jwk' }), dsaEncoding: 'ieee-p1363' }, Buffer.from(signature!, 'base64url'));
  assert.ok(ok, 'ES256 signature verifies');
});

for (const [label, scenario, dnsName] of [
  ['', 'sds-stream', 'grpc-core.interop'],
  [' (the socket path as :authority, relayed)', 'sds-stream-path-authority', 'relayed.grpc-core.interop'],
] as const) {
test(`StreamSecrets over C-core${label}: secrets, an ACK that ends the exchange, and a rotation pushed on the open stream`, { skip }, async () => {
  let firstChain = '';
  const { lines } = await runClient(scenario, {
    onLine: async (line, stdin) => {
      if (line['round'] !== 0) return;
      firstChain = ((line['secrets'] as Array<Record<string, string>>).find((s) => s['name'] === ID) ?? {})['certificate_chain'] ?? '';
      // A DNS name only the next certificate can carry: the agent renews the SVID and pushes it.
      await cluster.admin.call('Entries', 'UpdateEntry', { entry: { id: entryId, dns_names: [dnsName] }, mask: ['dns_names'] });
      stdin.write('go\n');
    },
  });
  assert.equal(lines.length, 2);
  for (const line of lines) {
    assert.equal(line['type_url'], 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret');
    assert.ok(line['nonce'], 'every response carries a nonce');
    const secrets = line['secrets'] as Array<Record<string, string>>;
    assert.deepEqual(secrets.map((s) => [s['name'], s['type']]).sort(), [['ROOTCA', 'validation_context'], [ID, 'tls_certificate']].sort());
  }
  assert.notEqual(lines[0]!['version_info'], lines[1]!['version_info']);
  const pushed = (lines[1]!['secrets'] as Array<Record<string, string>>).find((s) => s['name'] === ID)!;
  assert.notEqual(pushed['certificate_chain'], firstChain, 'a new certificate was pushed');
  const leaf = new X509Certificate(pushed['certificate_chain']!);
  assert.ok((leaf.subjectAltName ?? '').split(', ').includes(`DNS:${dnsName}`), leaf.subjectAltName);
  assert.ok(leaf.checkPrivateKey(createPrivateKey(pushed['private_key']!)), 'the pushed key matches');
});
}

test('several calls on one connection whose :authority is the socket path (later ones by HPACK index) are all served', { skip }, async () => {
  const { lines: [out] } = await runClient('jwt-path-authority');
  assert.equal(out!['error'], undefined, JSON.stringify(out));
  assert.equal(out!['validated_spiffe_id'], ID);
  assert.equal(out!['wrong_audience'], 'INVALID_ARGUMENT');
  assert.ok(Object.keys(out!['jwks'] as object).length > 0);
});

test('DeltaSecrets and FetchSecrets over C-core', { skip }, async () => {
  const { lines: [delta] } = await runClient('sds-delta');
  const resources = delta!['resources'] as Array<Record<string, string>>;
  assert.deepEqual(resources.map((r) => [r['resource_name'], r['name'], r['type']]).sort(), [
    ['ROOTCA', 'ROOTCA', 'validation_context'], [ID, ID, 'tls_certificate'],
  ].sort());
  assert.ok(resources.every((r) => r['version']), 'each resource has a version');
  const { lines: [fetched] } = await runClient('fetch-secrets');
  const secrets = fetched!['secrets'] as Array<Record<string, string>>;
  assert.deepEqual(secrets.map((s) => [s['name'], s['type']]), [[ID, 'tls_certificate']]);
  assert.ok(fetched!['version_info']);
});
