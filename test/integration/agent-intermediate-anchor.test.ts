/**
 * An agent whose --trust-bundle holds an intermediate CA of the server's chain, not its self-signed root: SPIFFE takes
 * every certificate of a bundle as a trust anchor (go-spiffe, SPIRE), so the agent authenticates the server with it.
 * The server runs under an operator's PKI (openssl CLI) whose chain goes Corporate Root → Issuing CA → Mesh CA.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { startCluster } from '../support/cluster.js';
import { opensslCa } from '../support/openssl.js';
import { tempDir } from '../support/server-kit.js';
import { teardown } from '../support/teardown.js';

test('an agent whose --trust-bundle is an intermediate CA of the server chain attests and serves SVIDs', { timeout: 120_000 }, async (t) => {
  const pki = tempDir('meshid-pki-anchor-');
  teardown(t).after(pki.cleanup);
  const root = opensslCa(pki.dir, 'Corporate Root');
  const issuing = opensslCa(pki.dir, 'Issuing CA', { issuer: root });
  const meshCa = opensslCa(pki.dir, 'Mesh CA', { issuer: issuing });
  const chainFile = path.join(pki.dir, 'mesh-chain.pem');
  fs.writeFileSync(chainFile, fs.readFileSync(meshCa.cert, 'utf8') + fs.readFileSync(issuing.cert, 'utf8'));
  // The server's own bundle stays the corporate root: only the agent's anchor is the intermediate.
  const cluster = await startCluster('meshid-anchor-', ['--upstream-ca-cert', chainFile, '--upstream-ca-key', meshCa.key, '--upstream-bundle', root.cert]);
  teardown(t).after(() => cluster.cleanup());
  await cluster.createEntry({ spiffeId: 'spiffe://example.org/web', selectors: [`unix:uid:${process.getuid!()}`] });

  const agent = await cluster.startAgent({
    joinToken: await cluster.token(),
    trustBundle: false,
    extraArgs: ['--trust-bundle', issuing.cert, '--trust-domain', 'example.org'],
  });
  const client = agent.client(10_000);
  teardown(t).after(() => client.close());
  const res = await client.fetchX509Svid();
  assert.equal(res.svids[0]?.spiffe_id, 'spiffe://example.org/web');
});
