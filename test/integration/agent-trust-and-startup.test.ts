/**
 * meshid-agent processes against a real meshid-server process: how an agent finds and authenticates the server
 * (the roots kept beside its SVID, --trust-bundle, a root taint it missed) and what its start refuses (bad settings, an
 * unsafe socket directory), with the socket's permissions and a state from before created_at_ms. Split from
 * agent-lifecycle.test.ts so neither file nears the runner's 240 s limit on a loaded machine. Each test has its own
 * cluster on temp dirs.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { restartServerProcess, startCluster, type AgentProcess, type Cluster } from '../support/cluster.js';
import { startServerProcess } from '../support/server-process.js';
import { withCluster, persisted } from '../support/agent-lifecycle-kit.js';
import { AgentStore } from '../../src/agent/storage/agent-store.js';
import { entryFromMessage, entryToMessage } from '../../src/agent/cache/agent-entry.js';
import { silentLogger } from '../../src/common/log.js';

const uid = process.getuid!();

test('an agent whose state is lost finds the server again with the roots kept beside its SVID; without them it says what to do', () =>
  withCluster('meshid-agent-lost-state-', async (c) => {
    await c.createEntry({ spiffeId: 'spiffe://example.org/dev', selectors: [`unix:uid:${uid}`] });
    const first = await c.startAgent({ joinToken: await c.token(), trustBundle: false, extraArgs: ['--insecure-bootstrap'] });
    await first.stop();
    // A damaged state (or a kill -9 between attestation and the first state save), and no --trust-bundle.
    const statePath = path.join(first.dataDir, 'state.json');
    fs.writeFileSync(statePath, 'garbage');
    const again = await c.startAgent({ name: 'again', dataDir: first.dataDir, trustBundle: false, wait: false });
    await again.waitForLog(/in sync with meshid-server/);
    await again.waitHealthy();
    assert.deepEqual(await again.svidIds(), ['spiffe://example.org/dev']);
    await again.stop();

    // An identity file of an earlier agent (no roots in it): refused at start, naming the fix, not retried forever.
    const identityPath = path.join(first.dataDir, 'agent-svid.json');
    const identity = JSON.parse(fs.readFileSync(identityPath, 'utf8')) as Record<string, unknown>;
    delete identity['trust_roots'];
    fs.writeFileSync(identityPath, JSON.stringify(identity));
    for (const name of fs.readdirSync(first.dataDir)) if (name.startsWith('state')) fs.rmSync(path.join(first.dataDir, name));
    const stuck = await c.startAgent({ name: 'stuck', dataDir: first.dataDir, trustBundle: false, wait: false });
    assert.equal(await stuck.exitCode(), 1);
    assert.match(stuck.output(), /has an SVID in .* but no trust bundle to authenticate meshid-server with .*: pass --trust-bundle FILE/);
  }));

/** The agent gave up at its first attestation because the server's certificate does not chain to --trust-bundle. */
async function assertRefusedBundle(c: Cluster, agent: AgentProcess, bundleFile: string): Promise<void> {
  // Bounded: an agent that takes this for an outage retries forever.
  const stillRunning = new Promise<string>((resolve) => setTimeout(resolve, 30_000, 'still running').unref());
  assert.equal(await Promise.race([agent.exitCode(), stillRunning]), 1, agent.output());
  const address = c.server.address().replace(/\./g, '\\.');
  const logged = agent.output().split('\n').find((l) => l.includes('"level":50') && l.includes('giving up'));
  assert.ok(logged, `an error-level log line:\n${agent.output()}`);
  const reason = (JSON.parse(logged) as { reason: string }).reason;
  assert.match(reason, new RegExp(`meshid-server at ${address} presents spiffe://.+/meshid/server, which the trust bundle given with --trust-bundle \\(${bundleFile}\\) does not authenticate`));
  assert.match(agent.output(), /^Error: FailedPrecondition: meshid-server at .* does not authenticate: .*meshid-server bundle show/m);
  assert.doesNotMatch(agent.output(), /cannot reach meshid-server to attest/, 'not taken for an outage and retried');
  assert.equal(fs.existsSync(path.join(agent.dataDir, 'agent-svid.json')), false);
  const listed = await c.admin.call('Agents', 'ListAgents', {});
  assert.deepEqual(listed.agents ?? [], [], 'the token was never presented');
}

test('a server that cannot prove the trust domain identity is never attested to: the agent exits naming --trust-bundle', () =>
  withCluster('meshid-agent-wrong-server-', async (c) => {
    const other = await startCluster('meshid-agent-other-td-');
    try {
      // The other cluster's roots: same trust domain name, different keys.
      fs.copyFileSync(other.bundleFile, c.bundleFile);
      const agent = await c.startAgent({ joinToken: await c.token(), wait: false });
      await assertRefusedBundle(c, agent, c.bundleFile);
    } finally {
      await other.cleanup();
    }
  }));

test("--trust-bundle of another trust domain: the first attestation stops at once, at error level, instead of retrying", () =>
  withCluster('meshid-agent-foreign-bundle-', async (c) => {
    const other = await startServerProcess(path.join(c.dir, 'other'), ['--trust-domain', 'other.example', '--datacenter', 'east']);
    try {
      const shown = await other.cli(['bundle', 'show']);
      assert.equal(shown.code, 0, shown.err);
      const foreign = path.join(c.dir, 'other-bundle.pem');
      fs.writeFileSync(foreign, shown.out);
      const agent = await c.startAgent({ joinToken: await c.token(), trustBundle: false, extraArgs: ['--trust-bundle', foreign], wait: false });
      await assertRefusedBundle(c, agent, foreign);
    } finally {
      await other.stop();
    }
  }));

test('the right --trust-bundle and the server down: an outage, told at warn level once and retried until the server is back', () =>
  withCluster('meshid-agent-bootstrap-outage-', async (c) => {
    await c.createEntry({ spiffeId: 'spiffe://example.org/late', selectors: [`unix:uid:${uid}`] });
    const token = await c.token();
    await c.server.stop();
    const agent = await c.startAgent({ joinToken: token, wait: false });
    // Two attempts refused, the first told at warn level and the retry at debug, the agent still running: not taken
    // for a wrong bundle.
    const attempts = (): string[] => agent.output().split('\n').filter((l) => /cannot reach meshid-server to attest; will retry/.test(l));
    const retries = (): number => attempts().length;
    for (let i = 0; retries() < 2; i++) {
      if (i > 400) assert.fail(`no second attempt:\n${agent.output()}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal(agent.child.exitCode, null, agent.output());
    assert.deepEqual(attempts().slice(0, 2).map((l) => (JSON.parse(l) as { level: number }).level), [40, 20]);
    // The reason is grpc-js's, without the empty "Resolution note: " label it ends with when it has no note.
    const reasons = agent.output().split('\n').filter((l) => /cannot reach meshid-server to attest/.test(l)).map((l) => (JSON.parse(l) as { reason: string }).reason);
    for (const reason of reasons) assert.match(reason, /^meshid-agent cannot reach meshid-server at 127\.0\.0\.1:\d+ \(Attest\): No connection established\. Last error: .*ECONNREFUSED 127\.0\.0\.1:\d+$/);
    await restartServerProcess(c);
    await agent.waitForLog(/in sync with meshid-server/, 60_000);
    assert.deepEqual(await agent.svidIds(), ['spiffe://example.org/late']);
  }));

test('start-up refuses what cannot work, with the fix in the message', () =>
  withCluster('meshid-agent-refusals-', async (c) => {
    const noToken = await c.startAgent({ name: 'no-token', wait: false });
    assert.equal(await noToken.exitCode(), 1);
    // Both ways of giving the token, the file's first: the flag alone reads as the only way.
    assert.ok(
      noToken.output().includes(
        `the agent has no SVID in ${noToken.dataDir} and no join token: start it with a new join token (meshid-server token generate), given as --join-token-file FILE or --join-token (join_token_file or join_token in the config)`,
      ),
      noToken.output(),
    );
    const noBundle = await c.startAgent({ name: 'no-bundle', joinToken: 'x', trustBundle: false, wait: false });
    assert.equal(await noBundle.exitCode(), 1);
    assert.match(noBundle.output(), /pass --trust-bundle FILE .* or --insecure-bootstrap/);
    const first = await c.startAgent({ name: 'owner', joinToken: await c.token() });
    const twin = await c.startAgent({ name: 'twin', dataDir: first.dataDir, wait: false });
    assert.equal(await twin.exitCode(), 1);
    assert.match(twin.output(), /data dir is in use by another meshid-agent/);
  }));

test('the socket is reachable by every local user whatever the umask: created directories 0755, socket 0777', () =>
  withCluster('meshid-agent-umask-', async (c) => {
    const socketPath = path.join(c.dir, 'run', 'meshid-agent', 'public', 'api.sock');
    const agent = await c.startAgent({ joinToken: await c.token(), socketPath, umask: '077' });
    for (const dir of ['run', 'run/meshid-agent', 'run/meshid-agent/public']) {
      assert.equal(fs.statSync(path.join(c.dir, dir)).mode & 0o777, 0o755, dir);
    }
    assert.equal(fs.statSync(socketPath).mode & 0o777, 0o777);
    assert.equal(fs.statSync(agent.dataDir).mode & 0o777, 0o700, 'the data dir stays private');
    await agent.stop();
    assert.equal(fs.existsSync(socketPath), false, 'the socket file is removed on shutdown');
  }));

test('a socket directory another user could tamper with is refused at start; nothing is chmod-ed through it', () =>
  withCluster('meshid-agent-unsafe-dir-', async (c) => {
    // What a local user does first: create the agent's default directory, so they can swap the socket later (for
    // a symlink the agent's chmod would follow, or for a socket of their own).
    const planted = path.join(c.dir, 'meshid-agent');
    fs.mkdirSync(planted, { mode: 0o777 });
    fs.chmodSync(planted, 0o777);
    const agent = await c.startAgent({ joinToken: await c.token(), socketPath: path.join(planted, 'public', 'api.sock'), wait: false });
    assert.equal(await agent.exitCode(), 1);
    assert.match(agent.output(), /workload socket directory: .*meshid-agent is writable by other users \(mode 777\) without the sticky bit.*chmod o-w/);
    assert.equal(fs.existsSync(path.join(planted, 'public')), false, 'nothing created under it');
  }));

test('entries held with their creation time in seconds (a state from before created_at_ms) are sent again once, exact', () =>
  withCluster('meshid-agent-created-ms-', async (c) => {
    await c.createEntry({ spiffeId: 'spiffe://example.org/aged', selectors: [`unix:uid:${uid}`] });
    let agent = await c.startAgent({ joinToken: await c.token() });
    await persisted(agent, 'spiffe://example.org/aged');
    await agent.stop();
    const exactness = (): boolean[] => {
      const store = AgentStore.open(agent.dataDir, silentLogger());
      try {
        return store.loadState(Date.now())!.entries.map((e) => e.createdAtExact);
      } finally {
        store.close();
      }
    };
    assert.deepEqual(exactness(), [true]);
    // Rewrite the state as an agent from before created_at_ms kept it: seconds only.
    const store = AgentStore.open(agent.dataDir, silentLogger());
    const state = store.loadState(Date.now())!;
    const seconds = state.entries.map((e) => {
      const { created_at_ms: _ms, ...message } = entryToMessage(e);
      return entryFromMessage(message);
    });
    store.saveState({ ...state, entries: seconds });
    store.close();
    assert.deepEqual(exactness(), [false]);

    agent = await c.startAgent();
    await agent.waitForLog(/in sync with meshid-server/);
    await agent.stop();
    assert.deepEqual(exactness(), [true], 'the server sent the entry again, in milliseconds');
  }));

test('a server restarted after a root taint still reaches agents that missed the push, and --trust-bundle repairs one that cannot', () =>
  withCluster('meshid-agent-missed-root-', async (c) => {
    await c.createEntry({ spiffeId: 'spiffe://example.org/kept', selectors: [`unix:uid:${uid}`] });
    let agent = await c.startAgent({ joinToken: await c.token() });
    await persisted(agent, 'spiffe://example.org/kept');
    await agent.stop();
    const activeRoot = async () => {
      const list = await c.admin.call('Authorities', 'ListAuthorities', {});
      return (list.authorities ?? []).find((a) => a.kind === 'root' && a.state === 'active')!;
    };
    // While the agent is down the root is tainted and the server restarts (as when it dies between the taint and its
    // push): it presents its saved SVID, still on the tainted root, which the agent's stored bundle holds.
    await c.admin.call('Authorities', 'TaintAuthority', { id: (await activeRoot()).id! });
    await restartServerProcess(c);
    agent = await c.startAgent();
    await agent.waitForLog(/in sync with meshid-server/);
    await agent.stop();
    // While it is down again, the new root is tainted too, and the server restarts without its saved SVID (lost, or
    // a server restored from a backup): its new SVID hangs from a root the agent's stored bundle has never held.
    await c.admin.call('Authorities', 'TaintAuthority', { id: (await activeRoot()).id! });
    fs.rmSync(path.join(c.dir, 'server', 'data', 'server-svid.json'));
    await restartServerProcess(c);
    agent = await c.startAgent();
    await agent.waitForLog(/"level":50.*trust bundle does not authenticate.*pass the current bundle with --trust-bundle/);
    await agent.stop();
    // A file older than the agent's state (say, left from the install) is not trusted next to it: it could bring
    // back a root the agent has since seen revoked.
    await c.writeBundle();
    const hourAgo = new Date(Date.now() - 3_600_000);
    fs.utimesSync(c.bundleFile, hourAgo, hourAgo);
    agent = await c.startAgent();
    await agent.waitForLog(/"level":50.*trust bundle does not authenticate/);
    await agent.stop();
    // Written after the state: trusted until the server's bundle replaces it. Also when the agent was killed during
    // a save: loading cuts the torn batch off its journal, which makes the journal newer than the file.
    const { journal } = JSON.parse(fs.readFileSync(path.join(agent.dataDir, 'state.json'), 'utf8')) as { journal: number };
    fs.appendFileSync(path.join(agent.dataDir, `state.${journal}.journal`), 'torn');
    await new Promise((r) => setTimeout(r, 50));
    fs.utimesSync(c.bundleFile, new Date(), new Date());
    agent = await c.startAgent();
    await agent.waitForLog(/in sync with meshid-server/);
    assert.deepEqual(await agent.svidIds(), ['spiffe://example.org/kept']);
  }));
