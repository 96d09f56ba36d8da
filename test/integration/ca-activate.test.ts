/**
 * `meshid-server ca activate` (SPIRE's `localauthority x509 activate`) and the prepared root's activation time in
 * `ca show`, run as an operator runs them: the CLI as a child process against a real server's admin socket. The
 * server and an agent run in-process on one FakeClock (judgeTlsOnClock makes node:tls judge validity on it); a
 * workload's X.509-SVID stream stays open across the activation and, once the agent renews on its usual schedule,
 * gets an SVID chaining to the activated root, checked with `openssl verify -x509_strict`.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { FakeClock } from '../../src/common/clock.js';
import { parseCertificate } from '../../src/common/x509/certificate.js';
import { splitConcatenatedDer } from '../../src/common/x509/pem.js';
import { connectWorkloadApi } from '../../src/agent/cli/workload-client.js';
import type { X509SvidResponse } from '../../src/agent/workload/messages.js';
import { advanceUntil } from '../support/advance-until.js';
import { event } from '../support/event.js';
import { startInProcessCluster } from '../support/cluster.js';
import { judgeTlsOnClock } from '../support/fake-clock-tls.js';
import { opensslVerify } from '../support/openssl.js';
import { SERVER_MAIN, runNode, type CliResult } from '../support/server-process.js';
import { teardown } from '../support/teardown.js';

const HOUR = 3_600_000;
const ID = 'spiffe://example.org/ca-activate/a';

interface JsonAuthority {
  id: string;
  kind: string;
  state: string;
  activates_at: number;
}

test('ca activate switches signing to the prepared root now, and ca show (pretty and JSON) says when a prepared root would have activated; an open workload stream gets SVIDs under it', async (t) => {
  const clock = new FakeClock(Math.floor((Date.now() - HOUR) / 1000) * 1000);
  teardown(t).after(judgeTlsOnClock(clock));
  const cluster = await startInProcessCluster(clock, 'meshid-ca-activate-');
  teardown(t).after(() => cluster.cleanup());
  const cli = (args: string[]): Promise<CliResult> => runNode(SERVER_MAIN, args, { MESHID_ADMIN_SOCKET: cluster.server.adminSocket });

  await cluster.createEntry({ spiffeId: ID, selectors: [`unix:uid:${process.getuid!()}`], x509SvidTtl: 3600 });
  const socket = path.join(cluster.dir, 'agent.sock');
  const agent = await cluster.startInProcessAgent({ socket_path: socket, data_dir: path.join(cluster.dir, 'agent-data'), join_token: await cluster.token() }, { clock, random: () => 0.5 });
  await advanceUntil(clock, () => agent.status().state === 'synced' && agent.status().svids === 1);
  assert.equal(agent.status().state, 'synced', agent.status().lastError ?? '');

  const client = connectWorkloadApi(socket);
  teardown(t).after(() => client.close());
  const watch = client.watchX509Svids();
  teardown(t).after(() => watch.cancel());
  // The first message itself, awaited: the agent holds the SVID already, but a loaded machine may take seconds to send
  // it. The bound is on a stream that never answers, not a timing under test.
  const first = await event('the stream\'s first SVID', watch.next(), 60_000);
  assert.equal(first.done, false, 'the stream delivered the first SVID');
  const updates: X509SvidResponse[] = [first.value];
  void (async () => {
    for await (const u of watch) updates.push(u);
  })().catch(() => undefined);

  const rotate = await cli(['ca', 'rotate-root', '--output', 'json']);
  assert.equal(rotate.code, 0, rotate.err);
  const prepared = JSON.parse(rotate.out) as JsonAuthority;
  const createdAt = cluster.meshidServer.ca.listAuthorities().find((a) => a.id === prepared.id)!.createdAt;
  const activatesAt = Math.ceil((createdAt + 24 * HOUR) / 1000);
  assert.equal(prepared.activates_at, activatesAt, 'root_activation_delay (24h) after it was made, in Unix seconds');

  const shown = JSON.parse((await cli(['ca', 'show', '--output', 'json'])).out) as { authorities: JsonAuthority[] };
  const roots = shown.authorities.filter((a) => a.kind === 'root');
  assert.deepEqual(roots.map((a) => [a.state, a.activates_at]).sort(), [['active', 0], ['prepared', activatesAt]], 'every authority has the field; 0 unless prepared root');
  const firstRoot = roots.find((a) => a.state === 'active')!;
  const pretty = await cli(['ca', 'show']);
  const blockOf = (id: string): string => pretty.out.split('\n\n').find((b) => new RegExp(`^Authority ID\\s*: ${id}$`, 'm').test(b)) ?? '';
  const block = blockOf(prepared.id);
  assert.match(block, new RegExp(`^Activates at\\s*: ${new Date(activatesAt * 1000).toISOString().replace(/[.]/g, '\\.')}$`, 'm'));
  assert.match(blockOf(firstRoot.id), /^State\s*: active$/m);
  assert.doesNotMatch(blockOf(firstRoot.id), /Activates at/);
  // Roots belong to the trust domain, intermediates to their datacenter.
  assert.match(blockOf(firstRoot.id), /^Datacenter\s*: -$/m);
  assert.match(blockOf(shown.authorities.find((a) => a.kind === 'intermediate')!.id), /^Datacenter\s*: east$/m);

  // Refusals: exit 1, one line on stderr saying what to give instead; nothing activated.
  const east = shown.authorities.find((a) => a.kind === 'intermediate')!;
  const notRoot = await cli(['ca', 'activate', '--id', east.id]);
  assert.equal(notRoot.code, 1);
  assert.match(notRoot.err, new RegExp(`^Error: InvalidArgument: authority ${east.id} is the east intermediate, not a root: ca activate takes the ID of the prepared root \\(ca show, State prepared\\)\\n$`));
  const unknown = await cli(['ca', 'activate', '--id', 'root-0000']);
  assert.equal(unknown.code, 1);
  assert.match(unknown.err, /^Error: NotFound: no authority with id "root-0000"/);
  const bare = await cli(['ca', 'activate']);
  assert.equal(bare.code, 1);
  assert.match(bare.err, /^Error: InvalidArgument: flag --id is required/);
  assert.equal(cluster.meshidServer.ca.listAuthorities().find((a) => a.id === prepared.id)?.state, 'prepared');

  const activated = await cli(['ca', 'activate', '--id', prepared.id]);
  assert.equal(activated.code, 0, activated.err);
  assert.equal(activated.err, '');
  assert.ok(activated.out.startsWith(`Root ${prepared.id} is active: it signs the intermediates now.\n\n`), activated.out);
  assert.match(activated.out, /^State\s*: active$/m);
  // Sent again, in SPIRE's spelling: answered as done.
  const again = await cli(['ca', 'activate', '-authorityID', prepared.id]);
  assert.equal(again.code, 0, again.err);
  assert.ok(again.out.startsWith(`Root ${prepared.id} was already active; nothing changed.\n\n`), again.out);
  const old = await cli(['ca', 'activate', '--id', firstRoot.id]);
  assert.equal(old.code, 1);
  assert.match(old.err, new RegExp(`^Error: FailedPrecondition: root ${firstRoot.id} is old, not prepared: only the prepared root can be activated, and no root is prepared \\(ca rotate-root prepares one\\)\\n$`));

  // The agent renews on its usual schedule (1 h SVIDs, at half-life): the open stream then gets an SVID under the
  // activated root, long before the 24 h activation delay would have run out.
  const newRootDer = cluster.meshidServer.ca.listAuthorities().find((a) => a.id === prepared.id)!.certDer!;
  const newRootKey = parseCertificate(newRootDer).subjectKeyId;
  const underNewRoot = (): X509SvidResponse | undefined =>
    updates.find((u) => {
      const chain = splitConcatenatedDer(u.svids?.[0]?.x509_svid ?? Buffer.alloc(0));
      return chain.length > 1 && parseCertificate(chain[1]!).authorityKeyId === newRootKey;
    });
  for (let m = 0; m < 60 && underNewRoot() === undefined; m++) {
    clock.advance(60_000);
    for (let i = 0; i < 8 && underNewRoot() === undefined; i++) await new Promise((r) => setTimeout(r, 25));
  }
  await advanceUntil(clock, () => underNewRoot() !== undefined);
  const update = underNewRoot();
  assert.ok(update !== undefined, 'the open stream got an SVID under the activated root');
  assert.ok(clock.now() < createdAt + 2 * HOUR);
  const chain = splitConcatenatedDer(update.svids![0]!.x509_svid!);
  const bundle = splitConcatenatedDer(update.svids![0]!.bundle!);
  assert.ok(bundle.some((r) => r.equals(newRootDer)), 'the bundle the workload got holds the activated root');
  const r = opensslVerify({ roots: [newRootDer], intermediates: chain.slice(1), leaf: chain[0]!, atTime: clock.now(), purpose: 'sslclient' });
  assert.ok(r.ok, r.output);
});
