/**
 * meshid under an operator's PKI: the server's CA is issued by a corporate issuing CA (made with the openssl CLI),
 * the corporate root is the bundle. A real agent attests over mTLS (the server's SVID chain is three CAs deep) and
 * serves a workload an X.509-SVID whose chain openssl verifies against the bundle it came with.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { pemToDerList, splitConcatenatedDer } from '../../src/common/x509/pem.js';
import { startCluster } from '../support/cluster.js';
import { opensslCa, opensslVerify } from '../support/openssl.js';
import { tempDir } from '../support/server-kit.js';

test('an agent under an upstream PKI serves SVIDs that carry the corporate CAs and verify against the corporate root', async (t) => {
  const pki = tempDir('meshid-pki-');
  t.after(pki.cleanup);
  const root = opensslCa(pki.dir, 'Corporate Root');
  const issuing = opensslCa(pki.dir, 'Issuing CA', { issuer: root });
  const meshCa = opensslCa(pki.dir, 'Mesh CA', { issuer: issuing });
  const chainFile = path.join(pki.dir, 'mesh-chain.pem');
  fs.writeFileSync(chainFile, fs.readFileSync(meshCa.cert, 'utf8') + fs.readFileSync(issuing.cert, 'utf8'));
  const cluster = await startCluster('meshid-upstream-pki-', ['--upstream-ca-cert', chainFile, '--upstream-ca-key', meshCa.key, '--upstream-bundle', root.cert]);
  t.after(() => cluster.cleanup());
  const rootDer = pemToDerList(fs.readFileSync(root.cert, 'utf8'));
  assert.deepEqual(pemToDerList(cluster.bundlePem), rootDer, 'the bundle is the corporate root');

  await cluster.createEntry({ spiffeId: 'spiffe://example.org/web', selectors: [`unix:uid:${process.getuid!()}`] });
  // The corporate root names no trust domain (no spiffe:// URI SAN), so the agent is told it.
  const agent = await cluster.startAgent({ joinToken: await cluster.token(), extraArgs: ['--trust-domain', 'example.org'] });
  const client = agent.client(10_000);
  t.after(() => client.close());
  const res = await client.fetchX509Svid();
  const svid = res.svids[0]!;
  const chain = splitConcatenatedDer(svid.x509_svid);
  assert.equal(chain.length, 4, 'leaf, datacenter intermediate, Mesh CA, Issuing CA');
  assert.deepEqual(chain.slice(2), [...pemToDerList(fs.readFileSync(chainFile, 'utf8'))]);
  const bundle = splitConcatenatedDer(svid.bundle);
  assert.deepEqual(bundle, rootDer);
  const verified = opensslVerify({ roots: bundle, intermediates: chain.slice(1), leaf: chain[0]!, purpose: 'sslclient' });
  assert.ok(verified.ok, verified.output);
});
