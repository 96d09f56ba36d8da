/**
 * What a meshid-agent process logs when it refuses a workload: the operator asking why a workload got
 * PERMISSION_DENIED finds the caller's pid, uid, gid and selectors, whichever uids were refused in the same minute.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { AGENT_MAIN, startClusterWithAgent, type AgentProcess, type Cluster } from '../support/cluster.js';
import { LEVEL, parseLogLines } from '../support/log-lines.js';
import { isMeshidError } from '../../src/common/errors.js';
import { event } from '../support/event.js';

let cluster: Cluster;
let agent: AgentProcess;
let entryId: string;

before(async () => {
  ({ cluster, agent, entryIds: [entryId] } = await startClusterWithAgent('meshid-refusal-log-', ['spiffe://example.org/test-runner']));
});

after(async () => {
  await cluster?.cleanup();
});

/** `meshid-agent api fetch x509` as `uid`: its pid and exit code. */
async function fetchAs(uid: number): Promise<{ pid: number; code: number | null }> {
  const child = spawn(process.execPath, [AGENT_MAIN, 'api', 'fetch', 'x509', '--socket-path', agent.socketPath], { uid, gid: uid, stdio: 'ignore' });
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  return { pid: child.pid!, code };
}

test('a refused workload is logged at warn with its pid, uid, gid and selectors, once a minute per uid, in lines holding each key once', async () => {
  const first = await fetchAs(65534);
  const second = await fetchAs(65533);
  assert.notEqual(first.code, 0);
  assert.notEqual(second.code, 0);
  // The same uid again within the minute: counted, not logged.
  assert.notEqual((await fetchAs(65534)).code, 0);
  await agent.waitForLog(/"uid":65533.*no identity issued/);

  const records = parseLogLines(agent.output());
  const refusals = records.filter((r) => /no identity issued/.test(r.msg));
  assert.deepEqual(
    refusals.map((r) => ({ level: r.level, rpc: r['rpc'], callerPid: r['callerPid'], uid: r['uid'], gid: r['gid'], pid: r['pid'] })),
    [
      { level: LEVEL.warn, rpc: 'FetchX509SVID', callerPid: first.pid, uid: 65534, gid: 65534, pid: agent.child.pid },
      { level: LEVEL.warn, rpc: 'FetchX509SVID', callerPid: second.pid, uid: 65533, gid: 65533, pid: agent.child.pid },
    ],
  );
  const selectors = refusals[0]!['selectors'] as string[];
  assert.ok(selectors.includes('unix:uid:65534') && selectors.includes('unix:gid:65534'), JSON.stringify(selectors));
  assert.match(refusals[0]!.msg, /meshid-server entry show/, 'says where to look');

  // The connection lines name the caller apart from the agent's own pid too.
  const connected = records.filter((r) => r.msg === 'workload connected' && r['uid'] === 65533);
  assert.equal(connected[0]?.['callerPid'], second.pid);
});

test('a stream ended by a lost entitlement is logged as the refusal it is: at warn with the caller and its selectors, not at info without them', async () => {
  const client = agent.client(30_000);
  try {
    const watch = client.watchX509Svids();
    const iterator = watch[Symbol.asyncIterator]();
    assert.equal((await event('the first FetchX509SVID message', iterator.next())).value?.svids.length, 1);
    await cluster.deleteEntry(entryId);
    await assert.rejects(event('the open stream ending when its only entry is deleted', iterator.next()), (err: unknown) => isMeshidError(err, 'permission_denied'));
  } finally {
    client.close();
  }
  await agent.waitForLog(/no longer entitled/);
  const ended = parseLogLines(agent.output()).filter((r) => /no longer entitled/.test(String(r['reason'])));
  assert.equal(ended.length, 1);
  const uid = process.getuid!();
  assert.deepEqual(
    { level: ended[0]!.level, rpc: ended[0]!['rpc'], code: ended[0]!['code'], callerPid: ended[0]!['callerPid'], uid: ended[0]!['uid'] },
    { level: LEVEL.warn, rpc: 'FetchX509SVID', code: 'permission_denied', callerPid: process.pid, uid },
  );
  assert.ok((ended[0]!['selectors'] as string[]).includes(`unix:uid:${uid}`), 'the selectors to compare with the entries');
});
