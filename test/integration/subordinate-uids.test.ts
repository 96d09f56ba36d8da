/**
 * One unprivileged user with subordinate uids (/etc/subuid: useradd gives each new user 65,536, which rootless
 * containers run as) is one user to the agent socket's per-uid bounds, not 65,537. Real processes connect as the
 * uids (the tests run as root, as newuidmap would let the user); the subuid and passwd files are temp files, not the
 * host's, which other tests share.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { spawn, type ChildProcess, type ChildProcessWithoutNullStreams } from 'node:child_process';
import * as grpc from '@grpc/grpc-js';
import { UdsServer } from '../../src/agent/endpoints/uds-server.js';
import { SubordinateIds } from '../../src/agent/attestor/subordinate-ids.js';
import { silentLogger } from '../../src/common/log.js';
import { publicTempDir } from '../support/peer-process.js';
import { until } from '../support/until.js';
import { teardown } from '../support/teardown.js';
import { startCluster } from '../support/cluster.js';
import { packageRoot } from '../../src/common/paths.js';

const OWNER = 1000;
const SUBORDINATE = [200_000, 200_001, 200_002];
const STRANGER = 300_000;

/** A process of `uid` holding one connection to the socket; its `state` says whether the agent kept it. */
function holdConnection(socketPath: string, uid: number): { child: ChildProcess; state: () => 'connecting' | 'open' | 'closed' } {
  const script = `
    const s = require('net').connect(${JSON.stringify(socketPath)});
    s.on('connect', () => console.log('open'));
    s.on('close', () => { console.log('closed'); process.exit(0); });
    s.on('error', () => {});
    setInterval(() => {}, 1000);`;
  const child = spawn(process.execPath, ['-e', script], { uid, gid: uid, stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  return { child, state: () => (out.includes('closed') ? 'closed' : out.includes('open') ? 'open' : 'connecting') };
}

test("a user's subordinate uids (/etc/subuid) hold connections out of the user's per-uid cap; another uid keeps its own", async (t) => {
  const dir = publicTempDir('meshid-subuid-');
  teardown(t).after(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.writeFileSync(path.join(dir, 'passwd'), `root:x:0:0::/root:/bin/sh\nalice:x:${OWNER}:${OWNER}::/home/alice:/bin/sh\n`);
  fs.writeFileSync(path.join(dir, 'subuid'), `alice:${SUBORDINATE[0]}:65536\n`);
  const ids = new SubordinateIds(undefined, { subuid: path.join(dir, 'subuid'), passwd: path.join(dir, 'passwd') });
  const socketPath = path.join(dir, 'agent.sock');
  const server = new grpc.Server();
  const uds = new UdsServer({ socketPath, grpcServer: server, log: silentLogger(), maxConnectionsPerUid: 2, accountOf: (uid) => ids.accountOf(uid) });
  await uds.start();
  teardown(t).after(async () => {
    server.forceShutdown();
    await uds.close();
  });
  await until('the self-test connection to close', () => (uds.openConnections() === 0 ? true : undefined));

  const held: Array<ReturnType<typeof holdConnection>> = [];
  teardown(t).after(() => held.forEach((h) => h.child.kill('SIGKILL')));
  // Two subordinate uids of alice's take her two places.
  for (const uid of SUBORDINATE.slice(0, 2)) {
    const h = holdConnection(socketPath, uid);
    held.push(h);
    await until(`uid ${uid}'s connection to be kept`, () => (h.state() === 'open' && uds.openConnections() === held.length ? true : undefined));
  }
  // A third of her uids is one connection too many for her.
  const third = holdConnection(socketPath, SUBORDINATE[2]!);
  held.push(third);
  await until(`uid ${SUBORDINATE[2]}'s connection to be closed at accept`, () => (third.state() === 'closed' ? true : undefined));
  assert.equal(uds.openConnections(), 2);
  // Another user's uid is not held back by hers.
  const stranger = holdConnection(socketPath, STRANGER);
  held.push(stranger);
  await until(`uid ${STRANGER}'s connection to be kept`, () => (stranger.state() === 'open' && uds.openConnections() === 3 ? true : undefined));
  // Alice's own uid spends the same budget as her subordinate uids.
  const own = holdConnection(socketPath, OWNER);
  held.push(own);
  await until(`uid ${OWNER}'s connection to be closed at accept`, () => (own.state() === 'closed' ? true : undefined));
  assert.equal(uds.openConnections(), 3);
});

const IDLE_CLIENT = path.join(packageRoot, 'dist/test/support/idle-stream-client.js');

/** test/support/idle-stream-client.ts as `uid`, and a function sending it one command and resolving with its answer. */
function idleClient(t: { after(fn: () => void): void }, socketPath: string, uid: number): (command: string) => Promise<{ refused: Array<{ details: string }>; open: number }> {
  const child = spawn(process.execPath, [IDLE_CLIENT, socketPath], { uid, gid: uid, stdio: ['pipe', 'pipe', 'pipe'] }) as ChildProcessWithoutNullStreams;
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  t.after(() => child.kill('SIGKILL'));
  const answers = readline.createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  return async (command) => {
    child.stdin.write(`${command}\n`);
    const next = await answers.next();
    if (next.done === true) throw new Error(`the idle-stream client exited: ${stderr}`);
    return JSON.parse(next.value);
  };
}

test("the agent counts the calls of a user's subordinate uids against the user's max_calls_per_uid", { timeout: 60_000 }, async (t) => {
  const cluster = await startCluster('meshid-subuid-calls-');
  teardown(t).after(() => cluster.cleanup());
  fs.chmodSync(cluster.dir, 0o755);
  fs.writeFileSync(path.join(cluster.dir, 'passwd'), `alice:x:${OWNER}:${OWNER}::/home/alice:/bin/sh\n`);
  fs.writeFileSync(path.join(cluster.dir, 'subuid'), `alice:${SUBORDINATE[0]}:65536\n`);
  const ids = new SubordinateIds(undefined, { subuid: path.join(cluster.dir, 'subuid'), passwd: path.join(cluster.dir, 'passwd') });
  const socketDir = path.join(cluster.dir, 'socket');
  fs.mkdirSync(socketDir, { mode: 0o755 });
  const socketPath = path.join(socketDir, 'agent.sock');
  const agent = await cluster.startInProcessAgent(
    { join_token: await cluster.token(), socket_path: socketPath, data_dir: path.join(cluster.dir, 'agent-data'), max_calls_per_uid: 10 },
    { accountOf: (uid) => ids.accountOf(uid) },
  );
  teardown(t).after(() => agent.stop());
  await until('the agent to sync', () => (agent.status().state === 'synced' ? true : undefined));

  const first = await idleClient(t, socketPath, SUBORDINATE[0]!)('open 10');
  assert.equal(first.open, 10, JSON.stringify(first));
  // Another of alice's uids finds her calls all taken.
  const second = await idleClient(t, socketPath, SUBORDINATE[1]!)('open 3');
  assert.equal(second.refused.length, 3, JSON.stringify(second));
  for (const { details } of second.refused) assert.match(details, new RegExp(`^uid ${OWNER} has 10 calls open on the meshid-agent socket, the most allowed`));
  // Another user's uid has calls of its own.
  const stranger = await idleClient(t, socketPath, STRANGER)('open 3');
  assert.equal(stranger.open, 3, JSON.stringify(stranger));
});
