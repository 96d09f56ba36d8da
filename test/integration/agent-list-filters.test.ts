/**
 * `meshid-server agent list` (and count) with spire-server's filters (-banned, -expiresBefore, -attestationType,
 * -canReattest, -selector with -matchSelectorsOn), against a real server process with agents attested over its agent
 * API with join tokens, one of them banned.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { attestAgent, attestWithToken, joinToken } from '../support/node-api-client.js';
import { startServerProcess } from '../support/server-process.js';
import { tempDir } from '../support/server-kit.js';
import { teardown } from '../support/teardown.js';

/** An agent as `agent list --output json` prints it: spire-server's Agent. */
interface ListedAgent {
  id: { trust_domain: string; path: string };
  banned: boolean;
  x509svid_expires_at: string;
}

const idOf = (a: ListedAgent): string => `spiffe://${a.id.trust_domain}${a.id.path}`;

test('agent list filters by --banned, --expires-before (strictly before, RFC 3339 or spire-server\'s layout), --attestation-type and --can-reattest', async (t) => {
  const { dir, cleanup } = tempDir('meshid-agent-list-filters-');
  teardown(t).after(cleanup);
  const server = await startServerProcess(dir);
  teardown(t).after(() => server.stop());
  const roots = (await server.cli(['bundle', 'show'])).out;
  const kept = await attestAgent(server, roots);
  const banned = await attestAgent(server, roots);
  const ban = await server.cli(['agent', 'ban', '--spiffe-id', banned.id]);
  assert.equal(ban.code, 0, ban.err);

  const listed = async (...filters: string[]): Promise<ListedAgent[]> => {
    const r = await server.cli(['agent', 'list', ...filters, '--output', 'json']);
    assert.equal(r.code, 0, r.err);
    return (JSON.parse(r.out) as { agents: ListedAgent[] }).agents;
  };
  const ids = async (...filters: string[]): Promise<string[]> => (await listed(...filters)).map(idOf).sort();
  const both = [kept.id, banned.id].sort();

  assert.deepEqual(await ids(), both);
  assert.deepEqual(await ids('--banned', 'true'), [banned.id]);
  assert.deepEqual(await ids('-banned', 'false'), [kept.id]);

  const expiries = (await listed()).map((a) => Number(a.x509svid_expires_at));
  const first = Math.min(...expiries);
  const last = Math.max(...expiries);
  const iso = (seconds: number): string => new Date(seconds * 1000).toISOString().replace('.000Z', 'Z');
  assert.deepEqual(await ids('--expires-before', iso(first)), [], 'an SVID expiring at the instant given is not before it');
  assert.deepEqual(await ids('--expires-before', iso(last + 1)), both);
  // spire-server's layout, here two hours east of UTC.
  const east = new Date((last + 1) * 1000 + 2 * 3600_000).toISOString();
  assert.deepEqual(await ids('-expiresBefore', `${east.slice(0, 10)} ${east.slice(11, 19)} +0200 +02`), both);
  assert.deepEqual(await ids('-expiresBefore', iso(last + 1), '-banned', 'true'), [banned.id]);

  assert.deepEqual(await ids('-attestationType', 'join_token'), both);
  assert.deepEqual(await ids('--attestation-type', 'x509pop'), []);
  // A join token is spent once: no agent attests again by itself (SPIRE's join_token agents neither).
  assert.deepEqual(await ids('-canReattest', 'false'), both);
  assert.deepEqual(await ids('--can-reattest', 'true'), []);
  const counted = await server.cli(['agent', 'count', '-canReattest', 'false', '-banned', 'true']);
  assert.equal(counted.out, '1 attested agent\n', counted.err);

  const plain = await server.cli(['agent', 'list', '--banned', 'true']);
  assert.equal(plain.code, 0, plain.err);
  assert.match(plain.out, /^Found 1 attested agent\n/);

  for (const bad of ['tomorrow', '2026-02-30T00:00:00Z', '2026-05-01T12:00:00']) {
    const r = await server.cli(['agent', 'list', '--expires-before', bad]);
    assert.equal(r.code, 1);
    assert.equal(r.out, '');
    assert.equal(
      r.err,
      `Error: InvalidArgument: flag --expires-before: "${bad}" is not a date: write it as 2026-05-01T12:00:00Z, or as spire-server does, "2026-05-01 12:00:00 +0000 +00"\n`,
    );
  }
  const maybe = await server.cli(['agent', 'list', '-banned', 'maybe']);
  assert.equal(maybe.code, 1);
  assert.match(maybe.err, /^Error: InvalidArgument: flag -banned must be one of true, false, got "maybe"\n$/);
});

test('agent list filters by --selector, matched as --match (superset by default, exact, subset, any) as entry show matches', async (t) => {
  const { dir, cleanup } = tempDir('meshid-agent-list-selectors-');
  teardown(t).after(cleanup);
  const server = await startServerProcess(dir);
  teardown(t).after(() => server.stop());
  const roots = (await server.cli(['bundle', 'show'])).out;
  // Every agent holds meshid:datacenter:east; the tokens add their own.
  const plain = await attestAgent(server, roots);
  const web = await attestWithToken(server, roots, await joinToken(server, ['--selector', 'host:role:web']));
  const webEu = await attestWithToken(server, roots, await joinToken(server, ['--selector', 'host:role:web', '--selector', 'host:region:eu']));
  const ids = async (...filters: string[]): Promise<string[]> => {
    const r = await server.cli(['agent', 'list', ...filters, '--output', 'json']);
    assert.equal(r.code, 0, r.err);
    return (JSON.parse(r.out) as { agents: ListedAgent[] }).agents.map(idOf).sort();
  };
  const sorted = (...a: string[]): string[] => a.sort();

  assert.deepEqual(await ids('--selector', 'host:role:web'), sorted(web.id, webEu.id));
  assert.deepEqual(await ids('-selector', 'host:role:web', '-selector', 'host:region:eu'), [webEu.id]);
  assert.deepEqual(await ids('--selector', 'meshid:datacenter:east', '--selector', 'host:role:web', '--match', 'exact'), [web.id]);
  assert.deepEqual(await ids('--selector', 'meshid:datacenter:east', '--selector', 'host:role:web', '-matchSelectorsOn', 'subset'), sorted(plain.id, web.id));
  assert.deepEqual(await ids('--selector', 'host:region:eu', '--selector', 'host:role:db', '--match', 'any'), [webEu.id]);
  assert.deepEqual(await ids('--selector', 'host:role:db'), []);

  const bare = await server.cli(['agent', 'list', '--match', 'any']);
  assert.equal(bare.code, 1);
  assert.equal(bare.err, 'Error: InvalidArgument: --match needs at least one --selector\n');
  const malformed = await server.cli(['agent', 'list', '--selector', 'role']);
  assert.equal(malformed.code, 1);
  assert.match(malformed.err, /^Error: InvalidArgument: .*role/);
});
