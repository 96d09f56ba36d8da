/**
 * meshid-server as a process: what it creates in an empty data dir, what a restart reuses, and what it refuses to
 * start on. Certificates are checked with openssl, not with meshid's own code.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { pemToDerList } from '../../src/common/x509/pem.js';
import { opensslVerify } from '../support/openssl.js';
import { tempDir } from '../support/server-kit.js';
import { runNode, runRefused, SERVER_MAIN, startServerProcess } from '../support/server-process.js';
import { takenLoopbackPort } from '../support/taken-port.js';
import { teardown } from '../support/teardown.js';
import { connectNode, nodeCall } from '../support/node-api-client.js';
import { generateKeyPair } from '../../src/common/x509/keys.js';
import { createCsr } from '../../src/common/x509/csr.js';

interface Authority {
  kind: string;
  datacenter: string;
  state: string;
  fingerprint: string;
}

async function authorities(cli: (a: string[]) => Promise<{ code: number | null; out: string }>): Promise<Authority[]> {
  const r = await cli(['ca', 'show', '--output', 'json']);
  assert.equal(r.code, 0, r.out);
  return (JSON.parse(r.out) as { authorities: Authority[] }).authorities;
}

test('an empty data dir gets a root and one intermediate per datacenter that openssl verifies against bundle show; a restart reuses them', async (t) => {
  const { dir, cleanup } = tempDir('meshid-server-life-');
  try {
    const s1 = await startServerProcess(dir);
    // A failed assertion would otherwise leave the server running, and the test file waiting on it.
    t.after(() => s1.stop());
    const before = await authorities(s1.cli);
    const intermediates = before.filter((a) => a.kind === 'intermediate');
    assert.deepEqual(intermediates.map((a) => a.datacenter).sort(), ['east', 'west']);
    const bundle = await s1.cli(['bundle', 'show', '--format', 'pem']);
    const roots = pemToDerList(bundle.out);
    assert.equal(roots.length, 1);
    // The intermediates themselves come from minting: the chain's second certificate is the datacenter's.
    for (const dc of ['east', 'west']) {
      const out = path.join(dir, `mint-${dc}`);
      const r = await s1.cli(['x509', 'mint', '--spiffe-id', 'spiffe://example.org/check', '--datacenter', dc, '--write', out]);
      assert.equal(r.code, 0, r.err);
      const chain = pemToDerList(fs.readFileSync(path.join(out, 'svid.pem'), 'utf8'));
      const listed = intermediates.find((a) => a.datacenter === dc)!;
      assert.equal(createHash('sha256').update(chain[1]!).digest('hex'), listed.fingerprint, `the ${dc} SVID is signed by the ${dc} intermediate`);
      const inter = opensslVerify({ roots, leaf: chain[1]! });
      assert.ok(inter.ok, `intermediate of ${dc}: ${inter.output}`);
      for (const purpose of ['sslclient', 'sslserver'] as const) {
        const leaf = opensslVerify({ roots, intermediates: [chain[1]!], leaf: chain[0]!, purpose });
        assert.ok(leaf.ok, `${dc} leaf as ${purpose}: ${leaf.output}`);
      }
    }
    assert.equal(fs.statSync(s1.dataDir).mode & 0o777, 0o700, 'data dir is 0700');
    assert.equal(fs.statSync(path.dirname(s1.adminSocket)).mode & 0o777, 0o700, 'admin socket directory is 0700');
    assert.equal(await s1.stop(), 0);

    const s2 = await startServerProcess(dir);
    t.after(() => s2.stop());
    const after = await authorities(s2.cli);
    assert.deepEqual(after.map((a) => a.fingerprint).sort(), before.map((a) => a.fingerprint).sort(), 'same root and intermediates after restart');
    assert.equal((await s2.cli(['bundle', 'show'])).out, bundle.out, 'same bundle after restart');
    await s2.stop();
  } finally {
    cleanup();
  }
});

test('agents of a datacenter taken out of the config are still listed by its name and counted in a warning at start; a name never served is refused', async (t) => {
  const { dir, cleanup } = tempDir('meshid-server-dc-gone-');
  try {
    const s1 = await startServerProcess(dir);
    // An attestation that fails would otherwise leave it running, and the test file waiting on it.
    t.after(() => s1.stop());
    const token = /Token: (\S+)/.exec((await s1.cli(['token', 'generate', '--datacenter', 'west'])).out)![1]!;
    const client = connectNode(s1, (await s1.cli(['bundle', 'show'])).out);
    const { privateKey, publicKey } = generateKeyPair('ec-p256');
    let agentId: string;
    try {
      agentId = (await nodeCall<{ spiffe_id: string }>(client, 'Attest', { join_token: token, csr: await createCsr(privateKey, publicKey) })).spiffe_id;
    } finally {
      client.close();
    }
    assert.equal(await s1.stop(), 0);

    const s2 = await startServerProcess(dir, ['--datacenter', 'east']);
    try {
      const warning = s2.output().split('\n').find((l) => l.includes('attested agents belong to datacenters not in the config'));
      assert.ok(warning !== undefined, s2.output());
      assert.deepEqual((JSON.parse(warning) as { agentsByDatacenter: unknown }).agentsByDatacenter, { west: 1 });
      const west = await s2.cli(['agent', 'list', '--datacenter', 'west', '--output', 'json']);
      assert.equal(west.code, 0, west.err);
      const listed = (JSON.parse(west.out) as { agents: Array<{ id: { trust_domain: string; path: string } }> }).agents;
      assert.deepEqual(listed.map((a) => `spiffe://${a.id.trust_domain}${a.id.path}`), [agentId]);
      const north = await s2.cli(['agent', 'list', '--datacenter', 'north']);
      assert.equal(north.code, 1);
      assert.equal(north.err, 'Error: InvalidArgument: datacenter "north" is not served by this server (configured: east)\n');
    } finally {
      await s2.stop();
    }
  } finally {
    cleanup();
  }
});

test('startup refuses a data dir of another trust domain, a foreign directory and an impossible TTL config, changing nothing', async () => {
  const { dir, cleanup } = tempDir('meshid-server-refuse-');
  try {
    const s = await startServerProcess(dir);
    await s.stop();
    const snapshot = (): string[] => fs.readdirSync(s.dataDir).sort();
    const files = snapshot();
    const other = await runRefused(['--trust-domain', 'other.org', '--data-dir', s.dataDir, '--bind-address', '127.0.0.1:0', '--admin-socket', path.join(dir, 'a2', 's.sock')]);
    assert.equal(other.code, 1);
    assert.match(other.err, /^Error: FailedPrecondition: data dir .* belongs to trust domain "example.org", not "other.org"/m);
    assert.deepEqual(snapshot(), files);

    const foreign = path.join(dir, 'foreign');
    fs.mkdirSync(foreign);
    fs.writeFileSync(path.join(foreign, 'precious.txt'), 'keep me');
    const r = await runRefused(['--trust-domain', 'example.org', '--data-dir', foreign, '--bind-address', '127.0.0.1:0', '--admin-socket', path.join(dir, 'a3', 's.sock')]);
    assert.equal(r.code, 1);
    assert.match(r.err, /is not empty and is not a meshid-server data dir/);
    assert.deepEqual(fs.readdirSync(foreign), ['precious.txt']);

    const ttl = await runRefused(['--trust-domain', 'example.org', '--data-dir', path.join(dir, 'new'), '--intermediate-ttl', '36h', '--admin-socket', path.join(dir, 'a4', 's.sock')]);
    assert.equal(ttl.code, 1);
    assert.match(ttl.err, /intermediate_ttl \(1d12h\) cannot cover a full X.509-SVID lifetime \(1d\).*Raise intermediate_ttl above 2d/);
    assert.equal(fs.existsSync(path.join(dir, 'new')), false, 'a refused config creates nothing');

    // A missing CA key stops startup with a message that says what to do.
    const keysDir = path.join(s.dataDir, 'ca', 'keys');
    const key = fs.readdirSync(keysDir).find((f) => f.startsWith('int-'))!;
    fs.renameSync(path.join(keysDir, key), path.join(dir, key));
    const missing = await runRefused(['--trust-domain', 'example.org', '--data-dir', s.dataDir, '--bind-address', '127.0.0.1:0', '--admin-socket', path.join(dir, 'a5', 's.sock')]);
    assert.equal(missing.code, 1);
    assert.match(missing.err, /CA key file .* is missing: restore it from a backup/);
  } finally {
    cleanup();
  }
});

test('a port another process holds stops startup with the setting that named it and what to do, not grpc-js\'s sentence', async () => {
  const grpcJsLine = /No address added out of total/;
  const { dir, cleanup } = tempDir('meshid-server-port-');
  const taken = net.createServer();
  try {
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const address = `127.0.0.1:${(taken.address() as net.AddressInfo).port}`;
    const agentApi = await runRefused(['--trust-domain', 'example.org', '--data-dir', path.join(dir, 'd1'), '--bind-address', address, '--admin-socket', path.join(dir, 'a1', 's.sock')]);
    assert.equal(agentApi.code, 1);
    assert.match(agentApi.err, new RegExp(`^Error: FailedPrecondition: cannot listen on ${address} \\(--bind-address, bind_address\\): another process is listening on that port; stop it or choose another port$`, 'm'));
    assert.doesNotMatch(agentApi.err, grpcJsLine, 'grpc-js does not say it first in its own words');
    assert.equal(agentApi.err.split('\n').filter((l) => l !== '' && !l.startsWith('{"level":')).length, 1, `one line besides the JSON log:\n${agentApi.err}`);
    // grpc-js's sentence went to the log, as a debug line of its own subsystem: from a data dir a start has claimed,
    // whose ports are not probed before it (listen-probe.ts), so grpc-js is the one that fails to bind.
    const claimed = await startServerProcess(path.join(dir, 'claimed'));
    assert.equal(await claimed.stop(), 0);
    const debug = await runRefused([
      '--trust-domain', 'example.org', '--data-dir', claimed.dataDir, '--bind-address', address, '--admin-socket', path.join(dir, 'a3', 's.sock'), '--log-level', 'debug',
    ]);
    assert.equal(debug.code, 1);
    assert.match(debug.err, /^\{"level":20,.*"subsystem":"grpc-js".*"msg":"No address added out of total 1 resolved"\}$/m);
    assert.doesNotMatch(debug.err, /^E /m);
    const endpoint = await runRefused([
      '--trust-domain', 'example.org', '--data-dir', path.join(dir, 'd2'), '--bind-address', '127.0.0.1:0', '--bundle-endpoint-address', address,
      '--admin-socket', path.join(dir, 'a2', 's.sock'),
    ]);
    assert.equal(endpoint.code, 1);
    assert.match(endpoint.err, new RegExp(`^Error: FailedPrecondition: cannot listen on ${address} \\(--bundle-endpoint-address, bundle_endpoint_address\\): another process`, 'm'));
    assert.doesNotMatch(endpoint.err, grpcJsLine);
  } finally {
    taken.close();
    cleanup();
  }
});

test('a first start whose agent API port is taken is refused before its new data dir is claimed: a retry with another trust domain and a free port starts', async (t) => {
  const { dir, cleanup } = tempDir('meshid-server-first-port-');
  teardown(t).after(cleanup);
  const port = await takenLoopbackPort(t);
  const dataDir = path.join(dir, 'data');
  const refused = await runRefused(['--trust-domain', 'first.org', '--data-dir', dataDir, '--bind-address', `127.0.0.1:${port}`, '--admin-socket', path.join(dir, 'admin', 'admin.sock')]);
  assert.equal(refused.code, 1, refused.err);
  assert.match(refused.err, new RegExp(`^Error: FailedPrecondition: cannot listen on 127\\.0\\.0\\.1:${port} \\(--bind-address, bind_address\\): another process is listening on that port; stop it or choose another port$`, 'm'));
  assert.equal(fs.existsSync(dataDir), false, 'nothing was written: no data dir, no CA');
  // The operator fixes the trust domain as well as the port: the data dir is still free for it.
  const server = await startServerProcess(dir, ['--trust-domain', 'example.org', '--datacenter', 'east']);
  teardown(t).after(() => server.stop());
  assert.match((await server.cli(['bundle', 'show'])).out, /BEGIN CERTIFICATE/);
});

test('a bundle endpoint named by a host name for the agent API\'s own address is refused naming both settings, by run and validate, not blamed on "another process"', async () => {
  const { dir, cleanup } = tempDir('meshid-server-clash-');
  try {
    // A port free a moment ago; nothing else is meant to listen on it while the server is refused.
    const probe = net.createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const port = (probe.address() as net.AddressInfo).port;
    await new Promise((resolve) => probe.close(resolve));
    const clash = new RegExp(
      `^Error: InvalidArgument: bundle_endpoint_address "localhost:${port}" and bind_address "127\\.0\\.0\\.1:${port}" are the same port: the agent API listens there \\(localhost is 127\\.0\\.0\\.1\\); give the bundle endpoint a port of its own`,
      'm',
    );
    const flags = ['--trust-domain', 'example.org', '--bind-address', `127.0.0.1:${port}`, '--bundle-endpoint-address', `localhost:${port}`];
    const run = await runRefused([...flags, '--data-dir', path.join(dir, 'd'), '--admin-socket', path.join(dir, 'a', 's.sock')]);
    assert.equal(run.code, 1, run.err);
    assert.match(run.err, clash);
    assert.doesNotMatch(run.err, /another process/);
    assert.equal(fs.existsSync(path.join(dir, 'd')), false, 'refused before the data dir is touched');
    const validate = await runNode(SERVER_MAIN, ['validate', ...flags]);
    assert.deepEqual([validate.code, validate.out], [1, '']);
    assert.match(validate.err, clash);
  } finally {
    cleanup();
  }
});

test('validate refuses a --join-token-ttl over the 7 days token generate allows, which run would have handed out by default', async () => {
  const over = await runNode(SERVER_MAIN, ['validate', '--trust-domain', 'example.org', '--join-token-ttl', '8d']);
  assert.deepEqual([over.code, over.out], [1, '']);
  assert.match(over.err, /^Error: InvalidArgument: join_token_ttl \(8d\) is longer than a join token may live \(7d\)/);
  const limit = await runNode(SERVER_MAIN, ['validate', '--trust-domain', 'example.org', '--join-token-ttl', '7d']);
  assert.equal(limit.code, 0, limit.err);
});

test('an operator-supplied root (--upstream-ca-cert/--upstream-ca-key) becomes the bundle and signs the intermediates', async () => {
  const { dir, cleanup } = tempDir('meshid-server-upstream-');
  try {
    const certFile = path.join(dir, 'upstream.pem');
    const keyFile = path.join(dir, 'upstream.key');
    const made = spawnSync('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', keyFile, '-out', certFile,
      '-subj', '/O=Example Corp/CN=Corporate Root', '-days', '3650',
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
      '-addext', 'subjectKeyIdentifier=hash',
    ], { encoding: 'utf8' });
    assert.equal(made.status, 0, made.stderr);
    const s = await startServerProcess(dir, ['--datacenter', 'east', '--upstream-ca-cert', certFile, '--upstream-ca-key', keyFile]);
    try {
      const roots = pemToDerList((await s.cli(['bundle', 'show'])).out);
      assert.deepEqual(roots, pemToDerList(fs.readFileSync(certFile, 'utf8')), 'the bundle is exactly the upstream root');
      const out = path.join(dir, 'mint');
      assert.equal((await s.cli(['x509', 'mint', '--spiffe-id', 'spiffe://example.org/x', '--write', out])).code, 0);
      const chain = pemToDerList(fs.readFileSync(path.join(out, 'svid.pem'), 'utf8'));
      const r = opensslVerify({ roots, intermediates: [chain[1]!], leaf: chain[0]! });
      assert.ok(r.ok, r.output);
    } finally {
      await s.stop();
    }
    // A key that does not belong to the certificate is refused.
    const otherKey = path.join(dir, 'other.key');
    spawnSync('openssl', ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', otherKey]);
    const bad = await runRefused(['--trust-domain', 'example.org', '--data-dir', path.join(dir, 'd2'), '--bind-address', '127.0.0.1:0',
      '--admin-socket', path.join(dir, 'a2', 's.sock'), '--upstream-ca-cert', certFile, '--upstream-ca-key', otherKey]);
    assert.equal(bad.code, 1);
    assert.match(bad.err, /upstream CA key does not match its certificate/);

    // An issuing CA under the corporate root is refused at start: published as the bundle's root, it would leave
    // OpenSSL and Envoy looking for its issuer (openssl verify -x509_strict: "unable to get issuer certificate").
    const subKey = path.join(dir, 'sub.key');
    const subCsr = path.join(dir, 'sub.csr');
    const subCert = path.join(dir, 'sub.pem');
    const ext = path.join(dir, 'sub.ext');
    fs.writeFileSync(ext, 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\n');
    for (const args of [
      ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', subKey, '-out', subCsr, '-subj', '/O=Example Corp/CN=Issuing CA'],
      ['x509', '-req', '-in', subCsr, '-CA', certFile, '-CAkey', keyFile, '-set_serial', '2', '-days', '365', '-extfile', ext, '-out', subCert],
    ]) {
      const r = spawnSync('openssl', args, { encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
    }
    const sub = await runRefused(['--trust-domain', 'example.org', '--data-dir', path.join(dir, 'd3'), '--bind-address', '127.0.0.1:0',
      '--admin-socket', path.join(dir, 'a3', 's.sock'), '--upstream-ca-cert', subCert, '--upstream-ca-key', subKey]);
    assert.equal(sub.code, 1);
    assert.match(sub.err, /upstream CA certificate \(.*Issuing CA\) is not self-signed: it was issued by ".*Corporate Root"/);
  } finally {
    cleanup();
  }
});

test('ca show lists a revoked JWT key by its ID, key ID and time, in text and --output json, as ca revoke prints it; a restart still lists it', async (t) => {
  const { dir, cleanup } = tempDir('meshid-server-jwt-revoke-');
  try {
    const s1 = await startServerProcess(dir);
    t.after(() => s1.stop());
    const jwt = (await authorities(s1.cli)).find((a) => a.kind === 'jwt' && a.state === 'active')! as Authority & { id: string };
    const tainted = await s1.cli(['ca', 'taint', '--id', jwt.id]);
    assert.equal(tainted.code, 0, tainted.err);
    const before = JSON.parse((await s1.cli(['ca', 'show', '--output', 'json'])).out) as { revoked_jwt_keys: unknown[] };
    assert.deepEqual(before.revoked_jwt_keys, [], 'a tainted key is not revoked yet');
    const revoked = await s1.cli(['ca', 'revoke', '--id', jwt.id, '--output', 'json']);
    assert.equal(revoked.code, 0, revoked.err);
    const listing = JSON.parse(revoked.out) as { revoked_jwt_keys: Array<{ id: string; key_id: string; revoked_at: number }> };
    // For a JWT key the Authority's fingerprint is its key ID (kid).
    assert.deepEqual(listing.revoked_jwt_keys.map((k) => [k.id, k.key_id]), [[jwt.id, jwt.fingerprint]]);
    const revokedAt = listing.revoked_jwt_keys[0]!.revoked_at;
    assert.ok(Math.abs(revokedAt - Date.now() / 1000) < 600, `revoked_at ${revokedAt} is Unix seconds of about now`);
    assert.deepEqual(JSON.parse((await s1.cli(['ca', 'show', '--output', 'json'])).out), listing, 'ca show --output json lists what ca revoke printed');
    const text = await s1.cli(['ca', 'show']);
    assert.equal(text.code, 0, text.err);
    const block = [['Revoked JWT key', jwt.id], ['Key ID', jwt.fingerprint], ['Revoked at', new Date(revokedAt * 1000).toISOString()]];
    assert.ok(text.out.includes(`\n${block.map(([label, value]) => `${label!.padEnd(16)} : ${value}\n`).join('')}`), `ca show names the revoked key:\n${text.out}`);
    assert.equal(await s1.stop(), 0);

    const s2 = await startServerProcess(dir);
    t.after(() => s2.stop());
    assert.deepEqual(JSON.parse((await s2.cli(['ca', 'show', '--output', 'json'])).out).revoked_jwt_keys, listing.revoked_jwt_keys, 'the datastore kept it');
  } finally {
    cleanup();
  }
});

test('ca rotate-root publishes a second root at once; ca taint replaces an intermediate; unknown IDs are NotFound', async () => {
  const { dir, cleanup } = tempDir('meshid-server-rotate-');
  try {
    const s = await startServerProcess(dir);
    try {
      const rotated = await s.cli(['ca', 'rotate-root', '--output', 'json']);
      assert.equal(rotated.code, 0, rotated.err);
      assert.equal((JSON.parse(rotated.out) as Authority).state, 'prepared');
      assert.equal(pemToDerList((await s.cli(['bundle', 'show'])).out).length, 2, 'both roots are in the bundle');
      const east = (await authorities(s.cli)).find((a) => a.kind === 'intermediate' && a.datacenter === 'east' && a.state === 'active')!;
      const tainted = await s.cli(['ca', 'taint', '--id', (east as Authority & { id: string }).id]);
      assert.equal(tainted.code, 0, tainted.err);
      const after = await authorities(s.cli);
      assert.ok(after.some((a) => a.fingerprint === east.fingerprint && a.state === 'tainted'));
      assert.ok(after.some((a) => a.kind === 'intermediate' && a.datacenter === 'east' && a.state === 'active' && a.fingerprint !== east.fingerprint));
      const missing = await s.cli(['ca', 'taint', '--id', 'int-nope']);
      assert.equal(missing.code, 1);
      assert.match(missing.err, /^Error: NotFound: no authority with id "int-nope"/);

      // The first root, tainted, stays published until revoked (SPIRE's -authorityID spelling).
      const first = (await authorities(s.cli)).find((a) => a.kind === 'root' && a.state === 'active')! as Authority & { id: string };
      const early = await s.cli(['ca', 'revoke', '-authorityID', first.id]);
      assert.equal(early.code, 1);
      assert.match(early.err, /^Error: FailedPrecondition: authority root-\S+ is active: only a tainted authority can be revoked/);
      // taint and revoke print the journal in ca show's --output json shape, revoked roots included.
      const journal = async (): Promise<unknown> => JSON.parse((await s.cli(['ca', 'show', '--output', 'json'])).out);
      const taintedRoot = await s.cli(['ca', 'taint', '--id', first.id, '--output', 'json']);
      assert.equal(taintedRoot.code, 0, taintedRoot.err);
      assert.deepEqual(JSON.parse(taintedRoot.out), await journal());
      assert.equal(pemToDerList((await s.cli(['bundle', 'show'])).out).length, 2, 'a tainted root is still published');
      const revokedJson = await s.cli(['ca', 'revoke', '--id', first.id, '--output', 'json']);
      assert.equal(revokedJson.code, 0, revokedJson.err);
      const listing = JSON.parse(revokedJson.out) as { revoked_roots: Array<{ id: string }> };
      assert.deepEqual(listing.revoked_roots.map((r) => r.id), [first.id]);
      assert.deepEqual(listing, await journal());
      assert.equal(pemToDerList((await s.cli(['bundle', 'show'])).out).length, 1, 'only the new root is published');
      assert.ok(!(await authorities(s.cli)).some((a) => (a as Authority & { id: string }).id === first.id));
    } finally {
      await s.stop();
    }
  } finally {
    cleanup();
  }
});
