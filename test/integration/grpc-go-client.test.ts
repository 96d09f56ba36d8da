/**
 * Interop with grpc-go and Go's crypto/x509, the stack and the certificate parser of go-spiffe and SPIRE
 * (test/interop/grpc_go_client.go), built in GOPATH mode from Debian's packaged sources. Needs golang-go,
 * golang-google-grpc-dev, golang-google-protobuf-dev, protoc-gen-go and protobuf-compiler (.ci/run installs them);
 * without them the tests are skipped (interopSkip).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { packageRoot } from '../../src/common/paths.js';
import { startClusterWithAgent, type AgentProcess, type Cluster } from '../support/cluster.js';
import { interopSkip } from '../support/interop.js';
import { publicTempDir } from '../support/peer-process.js';

const TD_ID = 'spiffe://example.org';
const ID = `${TD_ID}/interop/grpc-go`;
const GOPATH_PACKAGES = '/usr/share/gocode';

const skip = interopSkip(
  'grpc-go-client',
  ['go', 'protoc', 'protoc-gen-go'].every((c) => spawnSync(c, ['--version'], { stdio: 'ignore' }).error === undefined) &&
    ['grpc', 'protobuf'].every((p) => fs.existsSync(path.join(GOPATH_PACKAGES, 'src/google.golang.org', p))),
  'golang-go, golang-google-grpc-dev, golang-google-protobuf-dev, protoc-gen-go and protobuf-compiler',
);

let cluster: Cluster;
let agent: AgentProcess;
let work: string;
let client: string;

before(async () => {
  if (skip) return;
  work = publicTempDir('meshid-grpc-go-');
  const pkg = path.join(work, 'src/meshidinterop');
  fs.mkdirSync(path.join(pkg, 'client'), { recursive: true });
  fs.copyFileSync(path.join(packageRoot, 'test/interop/grpc_go_client.go'), path.join(pkg, 'client/main.go'));
  const gen = spawnSync('protoc', [
    `-I${path.join(packageRoot, 'proto')}`, '-I/usr/include', `--go_out=${path.join(work, 'src')}`, '--go_opt=paths=import',
    '--go_opt=Mworkload/workload.proto=meshidinterop/gen/workload', 'workload/workload.proto',
  ], { encoding: 'utf8' });
  assert.equal(gen.status, 0, `protoc-gen-go rejected workload.proto: ${gen.stderr}`);
  client = path.join(work, 'grpc_go_client');
  const build = spawnSync('go', ['build', '-o', client, '.'], {
    cwd: path.join(pkg, 'client'),
    encoding: 'utf8',
    env: { ...process.env, GO111MODULE: 'off', GOPATH: `${work}:${GOPATH_PACKAGES}`, GOCACHE: path.join(work, 'cache'), GOFLAGS: '' },
  });
  assert.equal(build.status, 0, `go build failed: ${build.stderr}`);
  ({ cluster, agent } = await startClusterWithAgent('meshid-grpc-go-', [ID]));
});

after(async () => {
  if (skip) return;
  await cluster?.cleanup();
  fs.rmSync(work, { recursive: true, force: true });
});

function run(scenario: string): Record<string, unknown> {
  const r = spawnSync(client, [agent.socketPath, scenario], { encoding: 'utf8', timeout: 20_000 });
  assert.equal(r.status, 0, `grpc_go_client ${scenario} exited ${r.status}: ${r.stderr}`);
  return JSON.parse(r.stdout) as Record<string, unknown>;
}

test('FetchX509SVID over grpc-go: crypto/x509 parses the chain and key and verifies the SVID to the bundle', { skip }, () => {
  const svids = run('x509')['svids'] as Array<Record<string, unknown>>;
  assert.equal(svids.length, 1);
  const svid = svids[0]!;
  assert.equal(svid['spiffe_id'], ID);
  assert.deepEqual(svid['uris'], [ID]);
  assert.equal(svid['leaf_is_ca'], false);
  assert.equal(svid['leaf_key_usage_ok'], true);
  assert.equal(svid['key_matches_leaf'], true);
  assert.equal(svid['intermediates'], 1, 'the datacenter intermediate travels with the leaf');
  const chain = svid['verified_chain_subjects'] as string[];
  assert.equal(chain.length, 3, `leaf → intermediate → root: ${chain.join(' | ')}`);
});

test('grpc-go: a call without the security header is InvalidArgument', { skip }, () => {
  const out = run('without-header');
  assert.equal(out['error'], 'InvalidArgument');
  assert.match(out['details'] as string, /workload\.spiffe\.io/);
});

test('JWT-SVIDs over grpc-go: fetched, validated for their audience only, JWT bundles keyed by trust domain ID', { skip }, () => {
  const out = run('jwt');
  assert.equal(out['svid_spiffe_id'], ID);
  assert.equal(out['validated_spiffe_id'], ID);
  assert.equal(out['sub_claim'], ID);
  assert.equal(out['wrong_audience'], 'InvalidArgument');
  assert.deepEqual(out['jwt_bundle_tds'], [TD_ID]);
});
