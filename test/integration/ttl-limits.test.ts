/**
 * Entries keep the TTLs they were created with, 0 meaning "the server's default": a server restarted with other
 * defaults signs default entries with its current ones, and one restarted with lower limits signs longer entries
 * for its current limits (the intermediates and JWT keys it keeps are sized for those) and says so at start.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPair } from '../../src/common/x509/keys.js';
import { createCsr } from '../../src/common/x509/csr.js';
import { parseCertificate } from '../../src/common/x509/certificate.js';
import { tempDir } from '../support/server-kit.js';
import { startServerProcess } from '../support/server-process.js';
import { attestAgent, connectNode, nodeCall } from '../support/node-api-client.js';
import { teardown } from '../support/teardown.js';

const HOUR = 3600;

test('a server restarted with other TTL settings signs default entries with the new default, longer ones with the new maximum', async (t) => {
  const { dir, cleanup } = tempDir('meshid-ttl-limits-');
  teardown(t).after(cleanup);
  let server = await startServerProcess(dir, ['--datacenter', 'east', '--max-jwt-svid-ttl', '2h']);
  teardown(t).after(() => server.stop());
  const alias = await server.cli(['entry', 'create', '--node', '--spiffe-id', 'spiffe://example.org/node/east', '--selector', 'meshid:datacenter:east']);
  assert.equal(alias.code, 0, alias.err);
  const created = await server.cli([
    'entry', 'create', '--parent-id', 'spiffe://example.org/node/east', '--spiffe-id', 'spiffe://example.org/long',
    '--selector', 'unix:uid:1000', '--x509-svid-ttl', String(24 * HOUR), '--jwt-svid-ttl', String(2 * HOUR),
  ]);
  assert.equal(created.code, 0, created.err);
  const entryId = /^Entry ID *: (\S+)/m.exec(created.out)![1]!;
  const plain = await server.cli(['entry', 'create', '--parent-id', 'spiffe://example.org/node/east', '--spiffe-id', 'spiffe://example.org/plain', '--selector', 'unix:uid:1001']);
  assert.equal(plain.code, 0, plain.err);
  assert.match(plain.out, /^X509-SVID TTL *: default$/m);
  const plainId = /^Entry ID *: (\S+)/m.exec(plain.out)![1]!;
  await server.stop();

  server = await startServerProcess(dir, [
    '--datacenter', 'east', '--default-x509-svid-ttl', '1h', '--max-x509-svid-ttl', '12h', '--default-jwt-svid-ttl', '5m', '--max-jwt-svid-ttl', '10m',
  ]);
  assert.match(server.output(), /"entries":1,"maxX509SvidTtl":"12h".*longer than max_x509_svid_ttl/);
  assert.match(server.output(), /"entries":1,"maxJwtSvidTtl":"10m".*longer than max_jwt_svid_ttl/);
  // Still editable: only a TTL being changed is held to today's limits.
  const edited = await server.cli(['entry', 'update', '--entry-id', entryId, '--dns', 'long.example.org']);
  assert.equal(edited.code, 0, edited.err);
  assert.match(edited.out, /^X509-SVID TTL *: 86400$/m);
  const rootsPem = (await server.cli(['bundle', 'show'])).out;
  const agent = await attestAgent(server, rootsPem);
  const client = connectNode(server, rootsPem, agent);
  try {
    const { privateKey, publicKey } = generateKeyPair('ec-p256');
    const csr = await createCsr(privateKey, publicKey);
    const signed = await nodeCall<{ results: Array<{ code?: number; message?: string; svid_chain?: Buffer[] }> }>(client, 'SignX509Svids', {
      items: [{ entry_id: entryId, csr }, { entry_id: plainId, csr }],
    });
    const lifetimes = signed.results.map((r) => {
      assert.equal(r.code ?? 0, 0, r.message);
      return Math.round((parseCertificate(r.svid_chain![0]!).notAfter - Date.now()) / 1000 / 60);
    });
    assert.deepEqual(lifetimes, [12 * 60, 60], 'SVID lifetimes in minutes: the new maximum, the new default');
    const jwtLifetime = async (id: string): Promise<number> => {
      const jwt = await nodeCall<{ token: string }>(client, 'SignJwtSvid', { entry_id: id, audience: ['db'] });
      const claims = JSON.parse(Buffer.from(jwt.token.split('.')[1]!, 'base64url').toString()) as { iat: number; exp: number };
      return claims.exp - claims.iat;
    };
    assert.equal(await jwtLifetime(entryId), 600);
    assert.equal(await jwtLifetime(plainId), 300);
  } finally {
    client.close();
  }
});
