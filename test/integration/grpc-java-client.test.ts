/**
 * Interop with grpc-java (Netty transport) and the JDK's java.security.cert, the stack of java-spiffe
 * (test/interop/GrpcJavaClient.java), built with protoc, grpc-java's protoc plugin and javac against the jars Debian
 * installs in /usr/share/java. Needs default-jdk-headless, protobuf-compiler, protobuf-compiler-grpc-java-plugin,
 * libgrpc-java, libprotobuf-java, libnetty-java, libguava-java, libperfmark-java, libgoogle-gson-java and
 * libgeronimo-annotation-1.3-spec-java (.ci/run installs them); without them the tests are skipped (interopSkip).
 *
 * Stub: java-spiffe dials the agent socket with Netty's epoll transport (EpollDomainSocketChannel), but Debian's
 * libnetty-java ships its classes without the JNI library (libnetty_transport_native_epoll_x86_64.so), so
 * Epoll.isAvailable() is false. The client dials a TCP loopback relay to the agent's socket instead (TcpRelay): the
 * agent attests the relay, this test process, and grpc-java's HTTP/2 framing, headers and status handling and the
 * JDK's parsing meet meshid unchanged.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { packageRoot } from '../../src/common/paths.js';
import { startClusterWithAgent, type AgentProcess, type Cluster } from '../support/cluster.js';
import { interopSkip } from '../support/interop.js';
import { publicTempDir } from '../support/peer-process.js';
import { TcpRelay } from '../support/tcp-relay.js';

const TD_ID = 'spiffe://example.org';
const ID = `${TD_ID}/interop/grpc-java`;
const JARS_DIR = '/usr/share/java';
/** grpc-java's runtime and what Debian's jars of it need at compile and run time (javax.annotation.Generated: compile). */
const JARS = [
  'grpc-api', 'grpc-core', 'grpc-netty', 'grpc-stub', 'grpc-protobuf', 'grpc-protobuf-lite', 'grpc-context', 'protobuf',
  'guava', 'perfmark-api', 'gson', 'geronimo-annotation-1.3-spec', 'netty-buffer', 'netty-codec', 'netty-codec-http',
  'netty-codec-http2', 'netty-common', 'netty-handler', 'netty-resolver', 'netty-transport', 'netty-transport-native-unix-common',
].map((j) => path.join(JARS_DIR, `${j}.jar`));
const PLUGIN = '/usr/bin/grpc_java_plugin';

const skip = interopSkip(
  'grpc-java-client',
  ['java', 'javac', 'protoc'].every((c) => spawnSync(c, ['-version'], { stdio: 'ignore' }).error === undefined) &&
    [PLUGIN, ...JARS].every((f) => fs.existsSync(f)),
  'default-jdk-headless, protobuf-compiler, protobuf-compiler-grpc-java-plugin, libgrpc-java, libprotobuf-java, libnetty-java, ' +
    'libguava-java, libperfmark-java, libgoogle-gson-java and libgeronimo-annotation-1.3-spec-java',
);

let cluster: Cluster;
let agent: AgentProcess;
let entryId: string;
let relay: TcpRelay;
let work: string;
let classpath: string;

before(async () => {
  if (skip) return;
  work = publicTempDir('meshid-grpc-java-');
  const gen = path.join(work, 'gen');
  const classes = path.join(work, 'classes');
  fs.mkdirSync(gen);
  fs.mkdirSync(classes);
  const protoc = spawnSync('protoc', [
    `-I${path.join(packageRoot, 'proto')}`, '-I/usr/include', `--java_out=${gen}`, `--grpc-java_out=${gen}`,
    `--plugin=protoc-gen-grpc-java=${PLUGIN}`, 'workload/workload.proto',
  ], { encoding: 'utf8' });
  assert.equal(protoc.status, 0, `protoc (java, grpc-java) rejected workload.proto: ${protoc.stderr}`);
  const sources = [...fs.readdirSync(gen).map((f) => path.join(gen, f)), path.join(packageRoot, 'test/interop/GrpcJavaClient.java')];
  const javac = spawnSync('javac', ['-nowarn', '-cp', JARS.join(':'), '-d', classes, ...sources], { encoding: 'utf8' });
  assert.equal(javac.status, 0, `javac failed: ${javac.stderr}`);
  classpath = [classes, ...JARS].join(':');
  let entryIds: string[];
  ({ cluster, agent, entryIds } = await startClusterWithAgent('meshid-grpc-java-', [ID]));
  entryId = entryIds[0]!;
  relay = await TcpRelay.start(agent.socketPath);
});

after(async () => {
  if (skip) return;
  await relay?.close();
  await cluster?.cleanup();
  fs.rmSync(work, { recursive: true, force: true });
});

/**
 * Runs one scenario of the client to its end (its calls have 20 s deadlines) and returns its JSON lines. The relay
 * runs on this event loop, so the client must run asynchronously.
 */
async function run(scenario: string, onLine?: (line: Record<string, unknown>) => Promise<void>, socketPath?: string): Promise<Array<Record<string, unknown>>> {
  const args = ['-cp', classpath, 'GrpcJavaClient', relay.address, scenario, ...(socketPath === undefined ? [] : [socketPath])];
  const child = spawn('java', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const lines: Array<Record<string, unknown>> = [];
  const pending: Array<Promise<void>> = [];
  readline.createInterface({ input: child.stdout }).on('line', (l) => {
    const line = JSON.parse(l) as Record<string, unknown>;
    lines.push(line);
    if (onLine) pending.push(onLine(line));
  });
  const [code] = (await once(child, 'close')) as [number | null];
  await Promise.all(pending);
  assert.equal(code, 0, `GrpcJavaClient ${scenario} exited ${code}: ${stderr}`);
  return lines;
}

type Svid = Record<string, unknown>;
const svidsOf = (line: Record<string, unknown> | undefined): Svid[] => (line?.['svids'] ?? []) as Svid[];

/** What every X509-SVID must look like to the JDK: the client has already parsed it and PKIX-validated its chain. */
function assertSvid(svid: Svid): void {
  assert.equal(svid['spiffe_id'], ID);
  assert.deepEqual(svid['uris'], [ID]);
  assert.equal(svid['key_algorithm'], 'EC');
  assert.equal(svid['key_curve_bits'], 256);
  assert.equal(svid['key_matches_leaf'], true);
  assert.equal(svid['leaf_is_ca'], false);
  assert.equal(svid['leaf_key_usage_ok'], true);
  assert.equal(svid['intermediates'], 1, 'the datacenter intermediate travels with the leaf');
  const chain = svid['verified_chain_subjects'] as string[];
  assert.equal(chain.length, 3, `leaf → intermediate → root: ${chain.join(' | ')}`);
}

test('FetchX509SVID over grpc-java (TCP relay stub): the JDK parses chain and PKCS#8 key and PKIX-validates to the bundle', { skip }, async () => {
  const [out] = await run('x509');
  const svids = svidsOf(out);
  assert.equal(svids.length, 1);
  assertSvid(svids[0]!);
});

// java-spiffe's channel: NettyChannelBuilder.forAddress(new DomainSocketAddress(path)), whose calls carry the path as
// :authority (grpc-java's authority for a non-IP address is its toString()). Node's HTTP/2 (nghttp2) refuses a "/" in
// :authority and resets every such stream (PROTOCOL_ERROR) before grpc-js sees the call, so java-spiffe gets INTERNAL
// on every call against meshid, where SPIRE's grpc-go server takes it. See grpc-core-client.test.ts for the same over C-core.
test('FetchX509SVID over grpc-java dialled as java-spiffe dials (DomainSocketAddress, relayed): served', { skip }, async () => {
  const [out] = await run('x509', undefined, agent.socketPath);
  assert.equal(out?.['error'], undefined, JSON.stringify(out));
  assertSvid(svidsOf(out)[0]!);
});

test('grpc-java (TCP relay stub): a call without the security header is InvalidArgument', { skip }, async () => {
  const [out] = await run('without-header');
  assert.equal(out!['error'], 'INVALID_ARGUMENT');
  assert.match(out!['details'] as string, /workload\.spiffe\.io/);
});

test('FetchX509Bundles over grpc-java (TCP relay stub): the own trust domain, with the roots the SVID validates to', { skip }, async () => {
  const [[bundles], [svid]] = [await run('x509-bundles'), await run('x509')];
  const own = (bundles!['bundles'] as Record<string, string[]>)[TD_ID];
  assert.ok(own !== undefined && own.length > 0, JSON.stringify(bundles));
  assert.deepEqual(own, svidsOf(svid)[0]!['bundle_sha256']);
});

test('JWT-SVIDs over grpc-java (TCP relay stub): fetched, validated for their audience only, ES256 verified with the served JWKS', { skip }, async () => {
  const [out] = await run('jwt');
  assert.equal(out!['svid_spiffe_id'], ID);
  assert.equal(out!['validated_spiffe_id'], ID);
  assert.equal(out!['sub_claim'], ID);
  assert.deepEqual(out!['aud_claim'], ['interop']);
  assert.equal(out!['exp_claim_kind'], 'NUMBER_VALUE', 'numeric claims arrive as numbers in the Struct');
  assert.equal(out!['alg'], 'ES256');
  assert.equal(out!['wrong_audience'], 'INVALID_ARGUMENT');
  assert.deepEqual(Object.keys(out!['jwks_kids'] as object), [TD_ID]);
  assert.equal(out!['signature_verified_with_jwks'], true, 'the token\'s kid names a key of the served JWKS that verifies it');
});

test('FetchX509SVID over grpc-java (TCP relay stub): a renewed SVID is pushed on the open stream', { skip }, async () => {
  let seen = 0;
  const lines = await run('rotation', async () => {
    if (seen++ > 0) return;
    // A DNS name only the next certificate can carry: the agent renews the SVID and pushes it.
    await cluster.admin.call('Entries', 'UpdateEntry', { entry: { id: entryId, dns_names: ['grpc-java.interop'] }, mask: ['dns_names'] });
  });
  assert.equal(lines.length, 2);
  const [first, pushed] = lines.map((l) => svidsOf(l)[0]!);
  assertSvid(first!);
  assertSvid(pushed!);
  assert.deepEqual(first!['dns_names'], []);
  assert.deepEqual(pushed!['dns_names'], ['grpc-java.interop']);
  assert.notEqual(pushed!['serial'], first!['serial'], 'a new certificate was pushed');
});
