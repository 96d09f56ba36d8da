/**
 * `npm start` (src/demo/start.ts), the README's first command, on real processes: it brings up a server, an agent and
 * the demo entry for this user, whose SVID the printed command fetches; the join token never shows on a command line
 * (any user's `ps` would see it) nor stays on disk; a second start reuses the state; a taken port is answered with the
 * demo's own setting; Ctrl-C stops the server and agent cleanly before the demo exits, and a demo killed with SIGKILL
 * leaves none running, nor does one whose starter was, nor one whose npm was (from a terminal, where its stdin never ends).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { packageRoot } from '../../src/common/paths.js';
import { parseCertificate } from '../../src/common/x509/certificate.js';
import { pemToDerList } from '../../src/common/x509/pem.js';
import { tempDir } from '../support/server-kit.js';
import { runNode } from '../support/server-process.js';
import { AGENT_MAIN } from '../support/cluster.js';
import { teardown } from '../support/teardown.js';
import { STOP_ON_STDIN_END_ENV } from '../../src/common/cli/stop-signal.js';
import { tetherGroup } from '../support/tethered-daemon.js';
import { exitedAndRead } from '../support/exited-and-read.js';
import { fixedPort } from '../support/fixed-port.js';

const DEMO_MAIN = path.join(packageRoot, 'dist/src/demo/start.js');

interface Demo {
  child: ChildProcess;
  output(): string;
  /** Resolves with the exit code. */
  exited: Promise<number | null>;
  /** The server's and agent's pids, once running: process groups of their own, so stop() ends them by pid. */
  daemons: number[];
}

function startDemo(dir: string, port: number | string): Demo {
  // Its own process group, as a shell's foreground job: Ctrl-C is a SIGINT to the group. Its stdin is a pipe only this
  // test's process holds, so that the demo stops its daemons and exits should this process die before stop().
  const child = spawn(process.execPath, [DEMO_MAIN], {
    cwd: dir,
    detached: true,
    env: { ...process.env, MESHID_DEMO_DIR: path.join(dir, '.meshid'), MESHID_DEMO_PORT: String(port), [STOP_ON_STDIN_END_ENV]: '1' },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = exitedAndRead(child);
  return { child, output: () => out, exited, daemons: [] };
}

async function running(demo: Demo): Promise<void> {
  for (let i = 0; i < 600 && !demo.output().includes('Press Ctrl-C to stop.'); i++) {
    if (demo.child.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.match(demo.output(), /meshid is running/, demo.output());
  demo.daemons.push(...childPids(demo.child.pid!));
}

async function stop(demo: Demo): Promise<void> {
  if (demo.child.exitCode === null && demo.child.signalCode === null) process.kill(-demo.child.pid!, 'SIGTERM');
  await demo.exited;
  // The server and agent got SIGTERM from the demo; any left go now.
  for (const pid of demo.daemons.filter(alive)) process.kill(pid, 'SIGKILL');
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Whether `pid` runs: a zombie (exited, not yet reaped by whoever inherited it) does not. */
function serving(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

function childPids(pid: number): number[] {
  return childProcesses(pid).map((c) => c.pid);
}

/** The demo's child processes (server and agent). */
function childProcesses(pid: number): { pid: number; commandLine: string }[] {
  const found: { pid: number; commandLine: string }[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) found.push({ pid: Number(entry), commandLine: fs.readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').join(' ') });
    } catch {
      // Gone meanwhile.
    }
  }
  return found;
}

/**
 * Nothing of a server was made under the demo's dir. Its child processes cannot tell once the demo has exited: any it
 * left are no longer its children then. meshid-server makes its data dir and admin socket dir before it binds the port.
 */
function assertStartedNothing(dir: string): void {
  assert.deepEqual(fs.readdirSync(path.join(dir, '.meshid')), [], 'the demo started a daemon');
}

/** The command lines of the demo's child processes (server and agent). */
function childCommandLines(pid: number): string[] {
  return childProcesses(pid).map((c) => c.commandLine);
}

test('npm start serves this user its demo SVID, keeps the join token off every command line and the disk, and starts again on its state', { timeout: 120_000 }, async (t) => {
  const { dir, cleanup } = tempDir('meshid-demo-');
  const demos: Demo[] = [];
  teardown(t).after(async () => {
    for (const d of demos) await stop(d);
    cleanup();
  });
  const port = await fixedPort();
  const demo = startDemo(dir, port);
  demos.push(demo);
  await running(demo);

  const children = childCommandLines(demo.child.pid!);
  assert.equal(children.length, 2, `the server and the agent: ${children.join('\n')}`);
  // --join-token=VALUE too: one argument, the token glued to the flag.
  for (const cmd of children) assert.doesNotMatch(cmd, / --?join-?[tT]oken[ =]/, `a join token on a command line: ${cmd}`);
  assert.ok(!fs.existsSync(path.join(dir, '.meshid', 'agent-join-token.json')), 'the spent token is not left on disk');

  const socket = path.join(dir, '.meshid', 'agent-socket', 'api.sock');
  assert.match(demo.output(), /api fetch x509 --socket-path \.meshid\/agent-socket\/api\.sock/);
  const fetched = await runNode(AGENT_MAIN, ['api', 'fetch', 'x509', '--socket-path', socket, '--write', path.join(dir, 'svid')]);
  assert.equal(fetched.code, 0, fetched.err);
  const leaf = parseCertificate(pemToDerList(fs.readFileSync(path.join(dir, 'svid', 'svid.0.pem'), 'utf8'))[0]!);
  assert.equal(leaf.uriSans[0], `spiffe://example.org/demo/${os.userInfo().username.replace(/[^A-Za-z0-9._-]/g, '_')}`);

  await stop(demo);
  const again = startDemo(dir, port);
  demos.push(again);
  await running(again);
  assert.equal((await runNode(AGENT_MAIN, ['api', 'fetch', 'x509', '--socket-path', socket])).code, 0, 'served again, from the same state');
});

test('npm start on a taken port says which setting moves it, and starts nothing', { timeout: 60_000 }, async (t) => {
  const { dir, cleanup } = tempDir('meshid-demo-port-');
  const taken = net.createServer();
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
  const demo = startDemo(dir, (taken.address() as net.AddressInfo).port);
  teardown(t).after(async () => {
    await stop(demo);
    taken.close();
    cleanup();
  });
  assert.equal(await demo.exited, 1);
  assert.match(demo.output(), /is in use: run it on another port with MESHID_DEMO_PORT=<port> npm start/);
  assertStartedNothing(dir);
});

test('npm start while a demo runs on the same state dir says so and starts nothing, on another port too', { timeout: 120_000 }, async (t) => {
  const { dir, cleanup } = tempDir('meshid-demo-twice-');
  const demos: Demo[] = [];
  teardown(t).after(async () => {
    for (const d of demos) await stop(d);
    cleanup();
  });
  const first = startDemo(dir, await fixedPort());
  demos.push(first);
  await running(first);

  // On another port, as the taken-port answer tells: the first demo's daemons answer on the sockets of this dir, so
  // the second took them for its own and printed that it ran before its own server was refused the locked data dir.
  const second = startDemo(dir, await fixedPort());
  demos.push(second);
  assert.equal(await second.exited, 1, second.output());
  assert.doesNotMatch(second.output(), /meshid is running/);
  assert.match(second.output(), /^meshid demo: a meshid demo already runs on \S+ \(something answers on \S+admin\.sock\): use it, stop it first/);
  assert.doesNotMatch(second.output(), /exited/, 'it started no server or agent of its own');
  const socket = path.join(dir, '.meshid', 'agent-socket', 'api.sock');
  assert.equal((await runNode(AGENT_MAIN, ['api', 'fetch', 'x509', '--socket-path', socket])).code, 0, 'the first demo still serves');
});

test('a demo killed with SIGKILL leaves no daemon running: both stop cleanly, and npm start on its state dir serves again', { timeout: 120_000 }, async (t) => {
  const { dir, cleanup } = tempDir('meshid-demo-killed-');
  const demos: Demo[] = [];
  teardown(t).after(async () => {
    for (const d of demos) await stop(d);
    cleanup();
  });
  const port = await fixedPort();
  const first = startDemo(dir, port);
  demos.push(first);
  await running(first);
  assert.equal(first.daemons.length, 2);
  // SIGKILL, the demo alone: no handler of its own runs, and its daemons, in process groups of their own, get no signal.
  first.child.kill('SIGKILL');
  await first.exited;
  // Their exit is an external event: polled, with a generous bound.
  for (let attempt = 0; first.daemons.some(serving); attempt++) {
    if (attempt > 300) assert.fail(`the daemons outlived their demo by 30 s: ${first.daemons.filter(serving).join(', ')}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  // Stopped as on SIGTERM: each removed its socket.
  for (const socket of ['admin/admin.sock', 'agent-socket/api.sock']) assert.ok(!fs.existsSync(path.join(dir, '.meshid', socket)), `${socket} was left behind`);

  const second = startDemo(dir, port);
  demos.push(second);
  await running(second);
  const socket = path.join(dir, '.meshid', 'agent-socket', 'api.sock');
  assert.equal((await runNode(AGENT_MAIN, ['api', 'fetch', 'x509', '--socket-path', socket])).code, 0, 'served again, from the same state');
});

/**
 * What starts the demo and holds its stdin, as a supervisor would: it sets STOP_ON_STDIN_END_ENV, starts the demo in a
 * process group of its own (as a shell runs a job), prints `demo <pid>` and waits. The demo's output is its own.
 */
const STARTER = `
const { spawn } = require('node:child_process');
const demo = spawn(process.execPath, [${JSON.stringify(DEMO_MAIN)}], {
  detached: true,
  stdio: ['pipe', 'inherit', 'inherit'],
  env: { ...process.env, ${JSON.stringify(STOP_ON_STDIN_END_ENV)}: '1' },
});
process.stdout.write('demo ' + demo.pid + '\\n');
`;

test('a demo whose starter is killed with SIGKILL stops, and its server and agent with it', { timeout: 120_000 }, async (t) => {
  const { dir, cleanup } = tempDir('meshid-demo-starter-');
  // The starter alone is killed, not its group: its own, the test's stand-in for a terminal's job.
  const starter = spawn(process.execPath, ['-e', STARTER], {
    cwd: dir,
    detached: true,
    env: { ...process.env, MESHID_DEMO_DIR: path.join(dir, '.meshid'), MESHID_DEMO_PORT: String(await fixedPort()) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  starter.stdout.on('data', (d: Buffer) => (out += d.toString()));
  starter.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const started: number[] = [];
  let tether: { release: () => void } | undefined;
  teardown(t).after(async () => {
    if (starter.exitCode === null && starter.signalCode === null) starter.kill('SIGKILL');
    // Left running only where the demo ignores its stdin's end: ended here, then the test's assertion tells.
    for (const pid of started.filter(alive)) process.kill(pid, 'SIGKILL');
    tether?.release();
    cleanup();
  });
  for (let i = 0; i < 600 && !out.includes('Press Ctrl-C to stop.') && starter.exitCode === null; i++) await new Promise((r) => setTimeout(r, 100));
  assert.match(out, /meshid is running/, out);
  const demoPid = Number(/^demo (\d+)$/m.exec(out)![1]);
  // Should this test's process die before its hooks run, the demo of the old code would serve on.
  tether = tetherGroup(demoPid);
  started.push(demoPid, ...childPids(demoPid));
  assert.equal(started.length, 3, `the demo, its server and its agent: ${childCommandLines(demoPid).join('\n')}`);

  process.kill(starter.pid!, 'SIGKILL');
  // Their exit is an external event: polled, with a generous bound.
  for (let attempt = 0; started.some(serving); attempt++) {
    if (attempt > 300) assert.fail(`the demo's processes outlived its starter by 30 s: ${started.filter(serving).join(', ')}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  // Stopped as on SIGTERM: each daemon removed its socket.
  for (const socket of ['admin/admin.sock', 'agent-socket/api.sock']) assert.ok(!fs.existsSync(path.join(dir, '.meshid', socket)), `${socket} was left behind`);
});

/** `pid`'s child processes, theirs, and so on. */
function descendantPids(pid: number): number[] {
  const children = childPids(pid);
  return [...children, ...children.flatMap(descendantPids)];
}

/** Waits for `npm start`'s demo to say it runs (at most 60 s), and returns every process under npm then. */
async function npmRunning(npm: ChildProcess, output: () => string): Promise<number[]> {
  for (let i = 0; i < 600 && !output().includes('Press Ctrl-C to stop.') && npm.exitCode === null; i++) await new Promise((r) => setTimeout(r, 100));
  assert.match(output(), /meshid is running/, output());
  return descendantPids(npm.pid!);
}

/** Waits until none of `pids` is serving: their exit is an external event, polled with a generous bound (30 s). */
async function noneServing(pids: readonly number[]): Promise<void> {
  for (let attempt = 0; pids.some(serving); attempt++) {
    if (attempt > 300) assert.fail(`the demo's processes outlived npm by 30 s: ${pids.filter(serving).join(', ')}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * `npm start` as a terminal's shell runs it: npm in a process group of its own (the job), whose stdin is no pipe
 * anyone closes, in a package whose start script is meshid's with the build left out (the tests run on the build
 * they have): npm spawns it through `sh -c`, as it does meshid's. The package's `dist` is meshid's.
 */
function npmStart(dir: string, port: number): { npm: ChildProcess; output: () => string } {
  const script = (JSON.parse(fs.readFileSync(path.join(packageRoot, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts['start']!;
  const build = 'npm run build && ';
  assert.ok(script.startsWith(build), `package.json's start script no longer builds first: ${script}`);
  const pkg = path.join(dir, 'pkg');
  fs.mkdirSync(pkg);
  fs.symlinkSync(path.join(packageRoot, 'dist'), path.join(pkg, 'dist'));
  fs.writeFileSync(path.join(pkg, 'package.json'), JSON.stringify({ name: 'meshid-demo-start-test', private: true, scripts: { start: script.slice(build.length) } }));
  const npm = spawn('npm', ['start'], {
    cwd: pkg,
    detached: true,
    env: { ...process.env, MESHID_DEMO_DIR: path.join(dir, '.meshid'), MESHID_DEMO_PORT: String(port), npm_config_update_notifier: 'false' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  npm.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  npm.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  return { npm, output: () => out };
}

test('npm start whose npm alone is killed with SIGKILL stops the demo, and its server and agent with it', { timeout: 120_000 }, async (t) => {
  const { dir, cleanup } = tempDir('meshid-demo-npm-');
  const { npm, output } = npmStart(dir, await fixedPort());
  // npm's group holds the demo (and the shell, if one stands between): a SIGTERM to it stops the demo's daemons too.
  const tether = tetherGroup(npm.pid!);
  const started: number[] = [];
  teardown(t).after(async () => {
    if (npm.exitCode === null && npm.signalCode === null) npm.kill('SIGKILL');
    // Left running only where the demo outlives npm: ended here, then the test's assertion tells.
    for (const pid of started.filter(alive)) process.kill(pid, 'SIGKILL');
    tether.release();
    cleanup();
  });
  started.push(...(await npmRunning(npm, output)));
  assert.ok(started.length >= 3, `the demo, its server and its agent: ${started.join(', ')}`);

  // As `kill -9 <npm's pid>` from another terminal: npm alone, no handler of its own runs and nothing is passed on.
  process.kill(npm.pid!, 'SIGKILL');
  await noneServing(started);
  for (const socket of ['admin/admin.sock', 'agent-socket/api.sock']) assert.ok(!fs.existsSync(path.join(dir, '.meshid', socket)), `${socket} was left behind`);
});

test('Ctrl-C in the terminal of npm start stops the server and agent cleanly: npm passing the SIGINT on to the demo is the same Ctrl-C', { timeout: 120_000 }, async (t) => {
  const { dir, cleanup } = tempDir('meshid-demo-npm-int-');
  const { npm, output } = npmStart(dir, await fixedPort());
  const tether = tetherGroup(npm.pid!);
  const started: number[] = [];
  const exited = exitedAndRead(npm);
  teardown(t).after(async () => {
    if (npm.exitCode === null && npm.signalCode === null) process.kill(-npm.pid!, 'SIGTERM');
    for (const pid of started.filter(alive)) process.kill(pid, 'SIGKILL');
    tether.release();
    cleanup();
  });
  started.push(...(await npmRunning(npm, output)));

  // As a terminal sends it: to every process of the foreground job, npm and the demo; npm sends the demo its own too.
  process.kill(-npm.pid!, 'SIGINT');
  await exited;
  await noneServing(started);
  // A second SIGTERM to a daemon while it stops ends it at once, its socket left behind.
  for (const socket of ['admin/admin.sock', 'agent-socket/api.sock']) assert.ok(!fs.existsSync(path.join(dir, '.meshid', socket)), `${socket} was left behind: not a clean stop\n${output()}`);
});

test('npm start with a MESHID_DEMO_PORT that is no port (abc, 0) says so and starts nothing', { timeout: 60_000 }, async (t) => {
  const { dir, cleanup } = tempDir('meshid-demo-bad-port-');
  teardown(t).after(cleanup);
  for (const port of ['abc', '0']) {
    const demo = startDemo(dir, port);
    // A demo that started anyway would keep its server and agent running past the test's timeout.
    teardown(t).after(() => stop(demo));
    assert.equal(await demo.exited, 1, demo.output());
    assert.match(demo.output(), new RegExp(`^meshid demo: MESHID_DEMO_PORT=${port} is not a port: give a number from 1 to 65535\n$`));
    assertStartedNothing(dir);
    await stop(demo);
  }
});

test('npm start in a dir too deep for its Unix sockets says to set MESHID_DEMO_DIR and starts nothing', { timeout: 60_000 }, async (t) => {
  const { dir, cleanup } = tempDir('meshid-demo-deep-');
  teardown(t).after(cleanup);
  // The agent socket, .meshid/agent-socket/api.sock under it, passes the kernel's 107 bytes.
  const deep = path.join(dir, 'd'.repeat(Math.max(1, 100 - dir.length)));
  fs.mkdirSync(deep);
  const demo = startDemo(deep, await fixedPort());
  teardown(t).after(() => stop(demo));
  assert.equal(await demo.exited, 1, demo.output());
  assert.match(demo.output(), /^meshid demo: \S+admin\.sock is \d+ bytes long, more than the 107 a Unix socket path may have .*: keep the demo's state in a shorter dir, e\.g\. MESHID_DEMO_DIR=\/tmp\/meshid-demo npm start\n$/);
  assertStartedNothing(deep);
});

test('npm start whose agent fails to start leaves no join token on disk, and the next start attests the agent with a new one', { timeout: 120_000 }, async (t) => {
  const { dir, cleanup } = tempDir('meshid-demo-agent-fails-');
  const demos: Demo[] = [];
  teardown(t).after(async () => {
    for (const d of demos) await stop(d);
    cleanup();
  });
  // A directory where the agent's socket goes: the agent refuses to replace it and exits, after taking its data dir's
  // lock. The demo took that non-empty data dir for an attested agent's and passed no token from then on.
  const socket = path.join(dir, '.meshid', 'agent-socket', 'api.sock');
  fs.mkdirSync(socket, { recursive: true, mode: 0o700 });
  const port = await fixedPort();
  const failed = startDemo(dir, port);
  demos.push(failed);
  assert.equal(await failed.exited, 1, failed.output());
  assert.match(failed.output(), /exists and is not a Unix socket[\s\S]*meshid-agent exited \(1\); stopping/);
  assert.ok(!fs.existsSync(path.join(dir, '.meshid', 'agent-join-token.json')), 'the join token is not left on disk');

  fs.rmdirSync(socket);
  const again = startDemo(dir, port);
  demos.push(again);
  await running(again);
  assert.equal((await runNode(AGENT_MAIN, ['api', 'fetch', 'x509', '--socket-path', socket])).code, 0);
});

for (const [signal, what] of [['SIGINT', 'Ctrl-C'], ['SIGHUP', 'closing the terminal']] as const) {
  test(`${what} stops the server and agent of the demo cleanly before the demo exits: exit 0, sockets removed, nothing left running`, { timeout: 120_000 }, async (t) => {
    const { dir, cleanup } = tempDir('meshid-demo-stop-');
    const demo = startDemo(dir, await fixedPort());
    teardown(t).after(async () => {
      await stop(demo);
      cleanup();
    });
    await running(demo);
    assert.equal(demo.daemons.length, 2, demo.output());

    // As a terminal sends them: to every process of the foreground group. Each daemon is to get one stop signal (a
    // second one while it stops ends it at once), and SIGHUP is none: the daemons log it and keep running.
    process.kill(-demo.child.pid!, signal);
    assert.equal(await demo.exited, 0, demo.output());
    assert.deepEqual(demo.daemons.filter(alive), [], 'the server and agent have exited when the demo has');
    for (const socket of [path.join('agent-socket', 'api.sock'), path.join('admin', 'admin.sock')]) {
      assert.ok(!fs.existsSync(path.join(dir, '.meshid', socket)), `${socket} is removed by a clean stop`);
    }
  });
}
