import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { spawnSync } from 'node:child_process';
import { opensslCa } from '../../support/openssl.js';
import { probeServerTrust } from '../../../src/agent/client/server-trust-probe.js';
import { pemToDerList } from '../../../src/common/x509/pem.js';
import { Cluster, startCluster, TRUST_DOMAIN } from '../../support/cluster.js';

let c: Cluster;
let other: Cluster;

before(async () => {
  c = await startCluster('meshid-trust-probe-');
  other = await startCluster('meshid-trust-probe-other-');
});
after(async () => {
  await other.cleanup();
  await c.cleanup();
});

const roots = (cluster: Cluster): Buffer[] => pemToDerList(fs.readFileSync(cluster.bundleFile, 'utf8'));

test("the server's own bundle authenticates it: no problem (the server's host name plays no part)", async () => {
  assert.equal(await probeServerTrust(roots(c), { serverAddress: c.server.address(), trustDomain: TRUST_DOMAIN }), undefined);
});

test('roots of another server: the SPIFFE ID presented and OpenSSL\'s reason', async () => {
  const problem = await probeServerTrust(roots(other), { serverAddress: c.server.address(), trustDomain: TRUST_DOMAIN });
  assert.deepEqual(problem, { presented: `spiffe://${TRUST_DOMAIN}/meshid/server`, reason: 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY' });
});

test('with a proxy configured for grpc-js, no direct probe: undefined (the channel may meet another peer)', async () => {
  for (const name of ['grpc_proxy', 'https_proxy', 'http_proxy']) {
    const env = { [name]: 'http://127.0.0.1:9' };
    assert.equal(await probeServerTrust(roots(other), { serverAddress: c.server.address(), trustDomain: TRUST_DOMAIN, env }), undefined, name);
  }
  // Upper case is not read by grpc-js, and an empty value sets nothing: the direct probe still reports.
  const env = { HTTPS_PROXY: 'http://127.0.0.1:9', grpc_proxy: '' };
  const problem = await probeServerTrust(roots(other), { serverAddress: c.server.address(), trustDomain: TRUST_DOMAIN, env });
  assert.equal(problem?.reason, 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY');
});

test('the right roots but another trust domain expected: the SPIFFE ID mismatch', async () => {
  const problem = await probeServerTrust(roots(c), { serverAddress: c.server.address(), trustDomain: 'other.example' });
  assert.equal(problem?.reason, `the server presented spiffe://${TRUST_DOMAIN}/meshid/server, expected spiffe://other.example/meshid/server`);
});

test('nothing listening, or a peer that never speaks TLS: undefined (an outage, not a trust problem)', async () => {
  const closed = net.createServer();
  await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
  const port = (closed.address() as net.AddressInfo).port;
  await new Promise((resolve) => closed.close(resolve));
  assert.equal(await probeServerTrust(roots(c), { serverAddress: `127.0.0.1:${port}`, trustDomain: TRUST_DOMAIN }), undefined);
  const held: net.Socket[] = [];
  const silent = net.createServer((s) => held.push(s.on('error', () => undefined)));
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  try {
    const address = `127.0.0.1:${(silent.address() as net.AddressInfo).port}`;
    assert.equal(await probeServerTrust(roots(c), { serverAddress: address, trustDomain: TRUST_DOMAIN, timeoutMs: 300 }), undefined);
  } finally {
    for (const s of held) s.destroy();
    silent.close();
  }
});

test('a certificate outside its validity is a clock (or a failing server) to retry, not a wrong bundle: undefined', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshid-probe-expired-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const ca = opensslCa(dir, 'probe-ca');
  const key = path.join(dir, 'leaf.key');
  const csr = path.join(dir, 'leaf.csr');
  const r = spawnSync('openssl', ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-subj', '/CN=server', '-out', csr], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  // `openssl ca` takes the validity as dates: past and future ones, with no waiting for a certificate to run out.
  fs.writeFileSync(path.join(dir, 'index.txt'), '');
  fs.writeFileSync(path.join(dir, 'serial'), '01\n');
  const config = path.join(dir, 'ca.cnf');
  fs.writeFileSync(config, `[ca]\ndefault_ca = probe\n[probe]\ndatabase = ${dir}/index.txt\nnew_certs_dir = ${dir}\nserial = ${dir}/serial\nunique_subject = no\ndefault_md = sha256\npolicy = any\n[any]\ncommonName = supplied\n`);
  const leaf = (name: string, start: string, end: string): string => {
    const cert = path.join(dir, `${name}.pem`);
    const signed = spawnSync('openssl', ['ca', '-batch', '-notext', '-config', config, '-cert', ca.cert, '-keyfile', ca.key, '-in', csr, '-out', cert, '-startdate', start, '-enddate', end], { encoding: 'utf8' });
    assert.equal(signed.status, 0, signed.stderr);
    return cert;
  };
  const probe = async (cert: string) => {
    const server = tls.createServer({ key: fs.readFileSync(key), cert: fs.readFileSync(cert), ALPNProtocols: ['h2'] });
    server.on('tlsClientError', () => undefined);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const address = `127.0.0.1:${(server.address() as net.AddressInfo).port}`;
      return await probeServerTrust(pemToDerList(fs.readFileSync(ca.cert, 'utf8')), { serverAddress: address, trustDomain: TRUST_DOMAIN });
    } finally {
      server.close();
    }
  };
  // The same key and CA valid now: a problem is reported (no SPIFFE ID), so undefined below is the validity's doing,
  // not a handshake that failed (which is undefined too).
  assert.deepEqual(await probe(leaf('current', '20200101000000Z', '21000101000000Z')), {
    presented: 'no SPIFFE ID',
    reason: `the server presented no SPIFFE ID, expected spiffe://${TRUST_DOMAIN}/meshid/server`,
  });
  assert.equal(await probe(leaf('expired', '20200101000000Z', '20200102000000Z')), undefined, 'expired');
  assert.equal(await probe(leaf('not-yet-valid', '21000101000000Z', '21000102000000Z')), undefined, 'not yet valid');
});
