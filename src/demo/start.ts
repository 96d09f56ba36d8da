/**
 * `npm start`: a working single-host deployment on the embedded default datastore — meshid-server, meshid-agent and
 * a demo registration entry for the invoking user — all under ./.meshid, then prints the command that fetches the
 * user's SVID. Runs until Ctrl-C; running it again reuses the same trust domain, entries and attested agent.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { packageRoot } from '../common/paths.js';
import { IDENTITY_FILE } from '../agent/storage/agent-store.js';
import { socketPathLengthProblem } from '../common/socket-file.js';
import { STOP_ON_STDIN_END_ENV, watchStdinEnd } from '../common/cli/stop-signal.js';

const root = path.resolve(process.env['MESHID_DEMO_DIR'] ?? '.meshid');
const td = 'example.org';
const dc = 'dc1';
const serverPort = process.env['MESHID_DEMO_PORT'] ?? '8081';
const adminSocket = path.join(root, 'admin', 'admin.sock');
const agentSocket = path.join(root, 'agent-socket', 'api.sock');
const serverMain = path.join(packageRoot, 'dist/bin/meshid-server.mjs');
const agentMain = path.join(packageRoot, 'dist/bin/meshid-agent.mjs');
const uid = process.getuid?.() ?? 0;
const user = os.userInfo().username;

const children: ChildProcess[] = [];
/** The agent's join token, on disk until the agent serves. */
const tokenConfig = path.join(root, 'agent-join-token.json');

/** A start that cannot go on: said on stderr, then everything started so far is stopped. */
class DemoFailure extends Error {}

function cli(main: string, args: string[], allowFailure = false): { ok: boolean; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [main, ...args], { encoding: 'utf8' });
  const ok = r.status === 0;
  if (!ok && !allowFailure) throw new DemoFailure(r.stderr || r.stdout);
  return { ok, stdout: r.stdout, stderr: r.stderr };
}

let stopping = false;

/**
 * Stops the server and agent with one SIGTERM each and exits with `code` once both have gone, so that the shell's
 * prompt comes back with their sockets removed and the agent's state saved. Called again, it does nothing more.
 */
function shutdown(code: number): void {
  // However the demo ends (the agent failed to start, Ctrl-C before it served): the token is not left on disk. The next
  // start makes a new one, as the agent holds no SVID.
  fs.rmSync(tokenConfig, { force: true });
  if (stopping) return;
  stopping = true;
  const running = children.filter((c) => c.exitCode === null && c.signalCode === null);
  for (const c of running) c.kill('SIGTERM');
  void Promise.all(running.map((c) => new Promise((resolve) => c.once('exit', resolve)))).then(() => process.exit(code));
}

/** How long each daemon has to answer its health check after the demo starts it. */
const START_WAIT_MS = 20_000;

async function waitFor(check: () => boolean, what: string): Promise<void> {
  const until = Date.now() + START_WAIT_MS;
  while (Date.now() < until && !stopping) {
    if (check()) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new DemoFailure(stopping ? '' : `meshid demo: ${what} did not come up within ${START_WAIT_MS / 1000} s; see the logs above\n`);
}

function start(main: string, args: string[], name: string): void {
  // A process group of its own, so that a terminal's Ctrl-C reaches the demo alone and each daemon gets one stop
  // signal, the demo's: a second one while a daemon stops ends it at once, its socket left behind.
  // The demo holds the write end of each daemon's stdin and never writes: when the demo dies, SIGKILL included, the
  // kernel closes it, and the daemon, told so by STOP_ON_STDIN_END_ENV, stops as on SIGTERM instead of serving on.
  const child = spawn(process.execPath, [main, ...args], {
    detached: true,
    stdio: ['pipe', 'inherit', 'inherit'],
    env: { ...process.env, MESHID_LOG_LEVEL: process.env['MESHID_LOG_LEVEL'] ?? 'warn', [STOP_ON_STDIN_END_ENV]: '1' },
  });
  child.on('exit', (code, signal) => {
    if (!stopping) {
      process.stderr.write(`meshid demo: ${name} exited (${signal ?? code}); stopping\n`);
      shutdown(1);
    }
  });
  children.push(child);
}

/**
 * How long after the first stop signal another one is the same stop. Under `npm start` in a terminal, Ctrl-C reaches
 * the demo twice at once: from the terminal (npm and the demo are one foreground job) and from npm, which passes on
 * the SIGINT and SIGTERM it gets to its script. Taken for a second Ctrl-C, npm's copy ended the daemons mid-stop.
 */
const SAME_STOP_MS = 1_000;
/** When the first stop signal came (performance.now()), undefined until one has. */
let firstStopSignalAt: number | undefined;
// SIGHUP too: the terminal closed. The daemons ignore it, and would go on serving (and holding the port) without the demo.
for (const name of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(name, () => {
    const now = performance.now();
    // A second Ctrl-C is passed on: it ends them at once, the daemons' own way out of a hung stop.
    if (firstStopSignalAt !== undefined && now - firstStopSignalAt >= SAME_STOP_MS) {
      for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
    }
    firstStopSignalAt ??= now;
    shutdown(0);
  });
}
// A starter that holds the demo's stdin and sets STOP_ON_STDIN_END_ENV (a test, a supervisor) ends the demo by dying,
// however it dies: a SIGKILL runs no handler of its own, and the demo, in a process group of its own as a shell's job,
// gets no signal either. Without the end it would serve on, its daemons with it, until it next wrote to the stdout its
// dead starter no longer reads (it writes nothing once running). From a terminal it is unset: stdin stays unread.
watchStdinEnd(process.env, () => shutdown(0));
/** How often the demo looks whether the process that started it is still its parent. */
const PARENT_CHECK_MS = 500;
// The demo stops when the process that started it dies, however it dies: `npm start` from a terminal, npm alone killed
// with SIGKILL, left the demo serving in a job the shell no longer knew, where Ctrl-C did not reach it (its stdin,
// the terminal, never ends). package.json's start script execs the demo, so that its parent is npm itself, not a
// shell that would outlive npm. An orphan is reparented (to init or a subreaper): its ppid changes. Checked on a
// timer that does not keep the demo running. A starter that had already died before this line ran goes unnoticed.
const startedBy = process.ppid;
const parentWatch = setInterval(() => {
  if (process.ppid === startedBy) return;
  clearInterval(parentWatch);
  shutdown(0);
}, PARENT_CHECK_MS);
parentWatch.unref();
// Not in the demo's process group, they would outlive a demo that died of an error: one SIGTERM stops them cleanly.
process.on('exit', () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
});

/** The demo's own check, so that a taken port is answered with the demo's setting, not the server's --bind-address. */
async function portFree(port: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = net.createServer();
    probe.once('error', () => resolve(false));
    probe.listen(Number(port), '127.0.0.1', () => probe.close(() => resolve(true)));
  });
}

/**
 * Whether something accepts connections on the Unix socket `file`: a demo already running on this state dir. A stale
 * socket file (its daemon gone) refuses, and a missing one fails, so neither counts.
 */
async function socketAnswers(file: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = net.connect(file);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
}

async function main(): Promise<void> {
  fs.mkdirSync(root, { recursive: true, mode: 0o700 });
  // A checkout deep in the tree makes socket paths the kernel cannot take; the daemons would refuse them naming
  // --admin-socket and --socket-path, flags the demo's user never gave.
  for (const socket of [adminSocket, agentSocket]) {
    const problem = socketPathLengthProblem(socket);
    if (problem !== undefined) {
      throw new DemoFailure(`meshid demo: ${problem}: keep the demo's state in a shorter dir, e.g. MESHID_DEMO_DIR=/tmp/meshid-demo npm start\n`);
    }
  }
  // Before the port: a second demo on this dir would take the first one's daemons, healthy on these sockets, for its
  // own, print that it runs, and then stop when its own server is refused the data dir the first one holds. The exit
  // leaves the first one's join token file alone (shutdown would remove it).
  for (const socket of [adminSocket, agentSocket]) {
    if (await socketAnswers(socket)) {
      process.stderr.write(
        `meshid demo: a meshid demo already runs on ${root} (something answers on ${socket}): use it, stop it first (Ctrl-C where it runs), ` +
          `or start another one with MESHID_DEMO_DIR=<another dir> MESHID_DEMO_PORT=<another port> npm start. ` +
          // Daemons of a killed demo stop by themselves (their stdin ends); one still stopping, or hung, is answering.
          `If no demo runs there any more, the meshid-server and meshid-agent it started still do: ` +
          `stop them with kill <pid> (pgrep -af 'meshid-(server|agent).mjs run' lists them)\n`,
      );
      process.exit(1);
    }
  }
  // 0 would give the server a free port the agent could not be told.
  if (!/^[0-9]{1,5}$/.test(serverPort) || Number(serverPort) < 1 || Number(serverPort) > 65_535) {
    throw new DemoFailure(`meshid demo: MESHID_DEMO_PORT=${serverPort} is not a port: give a number from 1 to 65535\n`);
  }
  if (!(await portFree(serverPort))) {
    process.stderr.write(`meshid demo: 127.0.0.1:${serverPort} is in use: run it on another port with MESHID_DEMO_PORT=<port> npm start\n`);
    process.exit(1);
  }
  start(serverMain, ['run', '--trust-domain', td, '--data-dir', path.join(root, 'server'), '--bind-address', `127.0.0.1:${serverPort}`, '--admin-socket', adminSocket, '--datacenter', dc], 'meshid-server');
  await waitFor(() => cli(serverMain, ['healthcheck', '--admin-socket', adminSocket], true).ok, 'meshid-server');

  // A node alias for every agent of the datacenter, and the demo workload under it: no agent ID needed up front.
  const alias = `spiffe://${td}/node/${dc}`;
  const workload = `spiffe://${td}/demo/${user.replace(/[^A-Za-z0-9._-]/g, '_')}`;
  const existing = cli(serverMain, ['entry', 'show', '--admin-socket', adminSocket, '--spiffe-id', workload, '--output', 'json']).stdout;
  // spire-server's ListEntriesResponse: the entries --spiffe-id found.
  if ((JSON.parse(existing) as { entries: unknown[] }).entries.length === 0) {
    cli(serverMain, ['entry', 'create', '--admin-socket', adminSocket, '--node', '--spiffe-id', alias, '--selector', `meshid:datacenter:${dc}`], true);
    cli(serverMain, ['entry', 'create', '--admin-socket', adminSocket, '--parent-id', alias, '--spiffe-id', workload, '--selector', `unix:uid:${uid}`]);
  }

  const bundleFile = path.join(root, 'bundle.pem');
  fs.writeFileSync(bundleFile, cli(serverMain, ['bundle', 'show', '--admin-socket', adminSocket]).stdout);
  const agentDir = path.join(root, 'agent');
  const agentArgs = ['run', '--server-address', `127.0.0.1:${serverPort}`, '--trust-bundle', bundleFile, '--socket-path', agentSocket, '--data-dir', agentDir];
  // The join token goes in a 0600 config file, not on the command line, where any user's `ps` would show it. Whenever
  // the agent holds no SVID, not only when its data dir is empty: an agent that failed to start left its lock file
  // there, and a ban removes the SVID but keeps the rest; without a token either would refuse every later start.
  if (!fs.existsSync(path.join(agentDir, IDENTITY_FILE))) {
    const token = /Token: (\S+)/.exec(cli(serverMain, ['token', 'generate', '--admin-socket', adminSocket, '--datacenter', dc]).stdout)?.[1];
    if (token === undefined) throw new DemoFailure(`meshid demo: token generate printed no token\n`);
    fs.writeFileSync(tokenConfig, JSON.stringify({ join_token: token }), { mode: 0o600 });
    agentArgs.push('--config', tokenConfig);
  }
  start(agentMain, agentArgs, 'meshid-agent');
  await waitFor(() => cli(agentMain, ['healthcheck', '--socket-path', agentSocket], true).ok, 'meshid-agent');
  // Spent once the agent serves: nothing to keep.
  fs.rmSync(tokenConfig, { force: true });

  const relative = path.relative(process.cwd(), agentSocket);
  const rel = relative.startsWith('..') ? agentSocket : relative;
  process.stdout.write(
    [
      '',
      `meshid is running: trust domain ${td}, datacenter ${dc}, server on 127.0.0.1:${serverPort}, state in ${root}`,
      `Registered ${workload} for uid ${uid} (${user}). Fetch its X.509-SVID with:`,
      '',
      `  node dist/bin/meshid-agent.mjs api fetch x509 --socket-path ${rel}`,
      '',
      `The server's admin commands (entry, token, bundle, ca, …) reach it with:`,
      '',
      `  export MESHID_ADMIN_SOCKET=${adminSocket}`,
      '  node dist/bin/meshid-server.mjs entry show',
      '',
      'Press Ctrl-C to stop.',
      '',
    ].join('\n'),
  );
}

await main().catch((e: unknown) => {
  if (!(e instanceof DemoFailure)) throw e;
  process.stderr.write(e.message);
  shutdown(1);
});
