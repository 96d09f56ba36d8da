/**
 * meshid under an operator's PKI: the server's CA is issued by a corporate issuing CA (made with the openssl CLI),
 * the corporate root is the bundle. A real agent attests over mTLS (the server's SVID chain is three CAs deep) and
 * serves a workload an X.509-SVID whose chain openssl verifies against the bundle it came with.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { pemToDerList, splitConcatenatedDer } from '../../src/common/x509/pem.js';
import { startCluster } from '../support/cluster.js';
import { opensslCa, opensslVerify } from '../support/openssl.js';
import { tempDir } from '../support/server-kit.js';
import { startServerProcess } from '../support/server-process.js';
import { teardown } from '../support/teardown.js';

test('an agent under an upstream PKI serves SVIDs that carry the corporate CAs and verify against the corporate root', async (t) => {
  const pki = tempDir('meshid-pki-');
  teardown(t).after(pki.cleanup);
  const root = opensslCa(pki.dir, 'Corporate Root');
  const issuing = opensslCa(pki.dir, 'Issuing CA', { issuer: root });
  const meshCa = opensslCa(pki.dir, 'Mesh CA', { issuer: issuing });
  const chainFile = path.join(pki.dir, 'mesh-chain.pem');
  fs.writeFileSync(chainFile, fs.readFileSync(meshCa.cert, 'utf8') + fs.readFileSync(issuing.cert, 'utf8'));
  const cluster = await startCluster('meshid-upstream-pki-', ['--upstream-ca-cert', chainFile, '--upstream-ca-key', meshCa.key, '--upstream-bundle', root.cert]);
  teardown(t).after(() => cluster.cleanup());
  const rootDer = pemToDerList(fs.readFileSync(root.cert, 'utf8'));
  assert.deepEqual(pemToDerList(cluster.bundlePem), rootDer, 'the bundle is the corporate root');

  await cluster.createEntry({ spiffeId: 'spiffe://example.org/web', selectors: [`unix:uid:${process.getuid!()}`] });
  // The corporate root names no trust domain (no spiffe:// URI SAN), so the agent is told it.
  const agent = await cluster.startAgent({ joinToken: await cluster.token(), extraArgs: ['--trust-domain', 'example.org'] });
  const client = agent.client(10_000);
  teardown(t).after(() => client.close());
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

test('ca revoke of one of two tainted upstream CAs under one corporate root is refused naming the other; revoked together, the root leaves the bundle', { timeout: 120_000 }, async (t) => {
  const { dir, cleanup } = tempDir('meshid-upstream-revoke-cli-');
  teardown(t).after(cleanup);
  const root = opensslCa(dir, 'Corporate Root');
  const other = opensslCa(dir, 'Other Root');
  const upstream = (name: string, issuer: typeof root, bundle: string): string[] => {
    const ca = opensslCa(dir, name, { issuer });
    return ['--datacenter', 'east', '--upstream-ca-cert', ca.cert, '--upstream-ca-key', ca.key, '--upstream-bundle', bundle];
  };
  const rootOf = (listing: string, cert: string): string => {
    const want = pemToDerList(fs.readFileSync(cert, 'utf8'))[0]!;
    const found = (JSON.parse(listing).authorities as Array<{ id: string; kind: string; fingerprint: string }>).filter((a) => a.kind === 'root');
    return found.find((a) => a.fingerprint === createHash('sha256').update(want).digest('hex'))?.id ?? assert.fail(`no root for ${cert} in ${listing}`);
  };
  const mesh1 = upstream('Mesh CA 1', root, root.cert);
  const mesh2 = upstream('Mesh CA 2', root, root.cert);
  const mesh3 = upstream('Mesh CA 3', other, other.cert);
  // A compromised CA replaced by its renewal under the same root, which is then replaced by a CA under another root.
  await (await startServerProcess(dir, mesh1)).stop();
  const renewed = await startServerProcess(dir, mesh2);
  teardown(t).after(() => renewed.stop());
  const first = rootOf((await renewed.cli(['ca', 'show', '--output', 'json'])).out, mesh1[3]!);
  assert.equal((await renewed.cli(['ca', 'taint', '--id', first])).code, 0);
  await renewed.stop();
  const server = await startServerProcess(dir, mesh3);
  teardown(t).after(() => server.stop());
  const second = rootOf((await server.cli(['ca', 'show', '--output', 'json'])).out, mesh2[3]!);
  assert.equal((await server.cli(['ca', 'taint', '--id', second])).code, 0);
  // Every root here is an upstream CA's, and ca show says so (an operator switching the upstream CA off looks for them).
  const shown = await server.cli(['ca', 'show', '--output', 'json']);
  const roots = (JSON.parse(shown.out).authorities as Array<{ kind: string; upstream_ca: boolean }>).filter((a) => a.kind === 'root');
  assert.deepEqual(roots.map((a) => a.upstream_ca), [true, true, true]);
  assert.equal((await server.cli(['ca', 'show'])).out.match(/^Kind\s+: root \(upstream CA\)$/gm)?.length, 3);

  const alone = await server.cli(['ca', 'revoke', '--id', first]);
  assert.equal(alone.code, 1);
  assert.match(alone.err, new RegExp(`while tainted root\\(s\\) ${second} are anchored there too: revoked without them, ${first} would stop nothing.*ca revoke --id ${first} --id ${second}`));
  const rootDer = pemToDerList(fs.readFileSync(root.cert, 'utf8'))[0]!;
  assert.ok(pemToDerList((await server.cli(['bundle', 'show'])).out).some((d) => d.equals(rootDer)), 'the corporate root is still published');

  // An ID given twice is revoked, and named, once.
  const together = await server.cli(['ca', 'revoke', '--id', first, '--id', second, '--id', first]);
  assert.equal(together.code, 0, together.err);
  assert.match(together.out, new RegExp(`^Authorities ${first}, ${second} are revoked\\.`));
  // Listed as ca show lists them: the roots it took out are there, as revoked roots.
  assert.equal(together.out.match(new RegExp(`^Revoked root +: (${first}|${second})$`, 'gm'))?.length, 2, together.out);
  assert.deepEqual(pemToDerList((await server.cli(['bundle', 'show'])).out), pemToDerList(fs.readFileSync(other.cert, 'utf8')), 'only the other root is published');
});
