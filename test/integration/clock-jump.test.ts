/**
 * The wall clock jumping forward under running daemons, as it does for a host resumed from suspend (a paused VM, a
 * laptop's lid) or stepped by NTP. A machine shared with other tests cannot have its clock moved, so libfaketime
 * moves the wall clock of the server and agent processes alone (their monotonic clock left as it is, as a suspend
 * leaves it); the test is skipped where libfaketime is not installed (Debian's faketime package; .ci/run installs it, and
 * MESHID_REQUIRE_INTEROP=1 makes its absence an error there).
 * Also the wall clock stepped back (NTP correcting a clock that ran ahead) under a running server.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { startCluster } from '../support/cluster.js';
import { startServerProcess } from '../support/server-process.js';
import { fakeWallClock, libfaketimeSkip } from '../support/fake-wall-clock.js';
import { teardown } from '../support/teardown.js';

const skip = libfaketimeSkip('clock-jump');

test('wall clock 20 h ahead at once (a resume from suspend; the clock moved by libfaketime): the agent renews its SVIDs past half-life at once, not 12 h later', { skip }, async (t) => {
  const dir = fs.mkdtempSync(path.join('/tmp', 'meshid-clock-'));
  teardown(t).after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const offsetFile = path.join(dir, 'offset');
  fs.writeFileSync(offsetFile, '+0\n');
  const env = fakeWallClock(offsetFile);
  const cluster = await startCluster('meshid-clock-jump-', [], env);
  teardown(t).after(() => cluster.cleanup());
  await cluster.createEntry({ spiffeId: 'spiffe://example.org/app', selectors: [`unix:uid:${process.getuid!()}`] });
  const agent = await cluster.startAgent({ joinToken: await cluster.token(), env });
  const client = agent.client();
  teardown(t).after(() => client.close());
  const served = async (): Promise<string> => ((await client.fetchX509Svid()).svids ?? [])[0]?.x509_svid?.toString('base64') ?? '';
  const before = await served();
  assert.notEqual(before, '');

  // The X.509-SVID and the agent SVID (24 h each) are past half-life, 4 h from expiry.
  fs.writeFileSync(offsetFile, '+20h\n');
  await agent.waitForLog(/"agent SVID renewed"/, 120_000);
  for (let attempt = 0; (await served()) === before; attempt++) {
    if (attempt > 600) assert.fail(`the agent still serves the SVID issued before the jump:\n${agent.output()}`);
    await new Promise((r) => setTimeout(r, 200));
  }
});

test('wall clock stepped back 1 h under meshid-server run (libfaketime): housekeeping still runs about a minute after start and prunes an expired join token', { skip }, async (t) => {
  const dir = fs.mkdtempSync(path.join('/tmp', 'meshid-clock-back-'));
  teardown(t).after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const offsetFile = path.join(dir, 'offset');
  fs.writeFileSync(offsetFile, '+0\n');
  const server = await startServerProcess(dir, ['--datacenter', 'east'], fakeWallClock(offsetFile));
  teardown(t).after(() => server.stop());
  fs.writeFileSync(offsetFile, '-1h\n');
  const generated = await server.cli(['token', 'generate', '--datacenter', 'east', '--ttl', '1']);
  assert.equal(generated.code, 0, generated.err);

  const tokens = (): number => {
    const db = new Database(path.join(server.dataDir, 'datastore.sqlite3'), { readonly: true });
    try {
      return (db.prepare('SELECT count(*) AS n FROM join_tokens').get() as { n: number }).n;
    } finally {
      db.close();
    }
  };
  assert.equal(tokens(), 1);
  // The first run is due a minute after start; the bound leaves room for a loaded machine, and is far below the hour
  // node-cron waited for the wall clock to come back to the minute it expected.
  for (let attempt = 0; tokens() > 0; attempt++) {
    if (attempt > 600) assert.fail(`the expired join token is still there 2 minutes after the step back:\n${server.output()}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  // The log line follows the commit the poll above saw, through the child's stdout pipe.
  for (let attempt = 0; !/"housekeeping removed expired records"/.test(server.output()); attempt++) {
    if (attempt > 50) assert.fail(`the token was removed, but not by housekeeping:\n${server.output()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
});
