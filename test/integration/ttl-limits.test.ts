/**
 * Entries keep the TTLs they were created with; a server restarted with lower limits signs them for its current
 * limits (the intermediates and JWT keys it keeps are sized for those) and says so at start.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPair } from '../../src/common/x509/keys.js';
import { createCsr } from '../../src/common/x509/csr.js';
import { parseCertificate } from '../../src/common/x509/certificate.js';
import { tempDir } from '../support/server-kit.js';
import { startServerProcess } from '../support/server-process.js';
import { attestAgent, connectNode, nodeCall } from '../support/node-api-client.js';

const HOUR = 3600;

test('a server restarted with lower max TTLs signs older entries for the new maximum, and warns about them at start', async (t) => {
  const { dir, cleanup } = tempDir('meshid-ttl-limits-');
  t.after(cleanup);
  let server = await startServerProcess(dir, ['--datacenter', 'east', '--max-jwt-svid-ttl', '2h']);
  t.after(() => server.stop());
  const alias = await server.cli(['entry', 'create', '--node', '--spiffe-id', 'spiffe://example.org/node/east', '--selector', 'meshid:datacenter:east']);
  assert.equal(alias.code, 0, alias.err);
  const created = await server.cli([
    'entry', 'create', '--parent-id', 'spiffe://example.org/node/east', '--spiffe-id', 'spiffe://example.org/long',
    '--selector', 'unix:uid:1000', '--x509-svid-ttl', String(24 * HOUR), '--jwt-svid-ttl', String(2 * HOUR),
  ]);
  assert.equal(created.code, 0, created.err);
  const entryId = /^Entry ID *: (\S+)/m.exec(created.out)![1]!;
  await server.stop();

  server = await startServerProcess(dir, [
    '--datacenter', 'east', '--default-x509-svid-ttl', '1h', '--max-x509-svid-ttl', '12h', '--default-jwt-svid-ttl', '5m', '--max-jwt-svid-ttl', '10m',
  ]);
  assert.match(server.output(), /"entries":1,"maxX509SvidTtl":"12h".*longer than max_x509_svid_ttl/);
  assert.match(server.output(), /"entries":1,"maxJwtSvidTtl":"10m".*longer than max_jwt_svid_ttl/);
  const rootsPem = (await server.cli(['bundle', 'show'])).out;
  const agent = await attestAgent(server, rootsPem);
  const client = connectNode(server, rootsPem, agent);
  try {
    const { privateKey, publicKey } = generateKeyPair('ec-p256');
    const signed = await nodeCall<{ results: Array<{ code?: number; message?: string; svid_chain?: Buffer[] }> }>(client, 'SignX509Svids', {
      items: [{ entry_id: entryId, csr: await createCsr(privateKey, publicKey) }],
    });
    assert.equal(signed.results[0]!.code ?? 0, 0, signed.results[0]!.message);
    const leaf = parseCertificate(signed.results[0]!.svid_chain![0]!);
    const lifetime = (leaf.notAfter - Date.now()) / 1000;
    assert.ok(lifetime > 11.9 * HOUR && lifetime <= 12 * HOUR, `the SVID lives ${lifetime} s`);
    const jwt = await nodeCall<{ token: string }>(client, 'SignJwtSvid', { entry_id: entryId, audience: ['db'] });
    const claims = JSON.parse(Buffer.from(jwt.token.split('.')[1]!, 'base64url').toString()) as { iat: number; exp: number };
    assert.equal(claims.exp - claims.iat, 600);
  } finally {
    client.close();
  }
});
