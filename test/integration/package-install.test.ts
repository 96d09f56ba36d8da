/**
 * meshid as an operator gets it from `npm pack`: the tarball unpacked alone, its `install` script run there (it
 * compiles the native addons), then meshid-server and meshid-agent started from it serve a workload its X.509-SVID.
 * Only the dependencies come from this checkout (a node_modules link): `npm install` of the tarball would compile
 * better-sqlite3 from source without network (prebuild-install cannot download), minutes on this machine.
 * What the tarball may hold at all: test/unit/scripts/package-contents.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { packageRoot } from '../../src/common/paths.js';
import { runNode, startServerProcess } from '../support/server-process.js';
import { teardown } from '../support/teardown.js';
import { tetheredDaemon } from '../support/tethered-daemon.js';

const run = promisify(execFile);

test('the daemons and CLIs of an unpacked npm pack tarball serve a workload its X.509-SVID', async (t) => {
  const td = teardown(t);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshid-pkg-'));
  td.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  // --ignore-scripts: the runner has just built dist/bin; `prepare` would build it all again.
  const { stdout } = await run('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', dir], { cwd: packageRoot, maxBuffer: 64 << 20 });
  const [packed] = JSON.parse(stdout) as Array<{ filename: string }>;
  await run('tar', ['-xzf', path.join(dir, packed!.filename), '-C', dir]);
  const installed = path.join(dir, 'package');
  fs.symlinkSync(path.join(packageRoot, 'node_modules'), path.join(installed, 'node_modules'));
  const pkg = JSON.parse(fs.readFileSync(path.join(installed, 'package.json'), 'utf8')) as { bin: Record<string, string>; scripts: Record<string, string> };
  await run('sh', ['-c', pkg.scripts['install']!], { cwd: installed, maxBuffer: 64 << 20 });
  for (const addon of ['peercred', 'malloc']) assert.ok(fs.existsSync(path.join(installed, 'native', addon, 'build', 'Release', `${addon}.node`)), `${addon}.node was not built`);
  const serverMain = path.join(installed, pkg.bin['meshid-server']!);
  const agentMain = path.join(installed, pkg.bin['meshid-agent']!);

  const state = fs.mkdtempSync(path.join(os.tmpdir(), 'meshid-pkg-run-'));
  td.after(() => fs.rmSync(state, { recursive: true, force: true }));
  const server = await startServerProcess(path.join(state, 'server'), ['--datacenter', 'east'], {}, serverMain);
  td.after(() => server.stop());
  const cli = async (args: string[]): Promise<string> => {
    const r = await server.cli(args);
    assert.equal(r.code, 0, r.err);
    return r.out;
  };
  const node = 'spiffe://example.org/node/east';
  await cli(['entry', 'create', '--node', '--spiffe-id', node, '--selector', 'meshid:datacenter:east']);
  await cli(['entry', 'create', '--parent-id', node, '--spiffe-id', 'spiffe://example.org/web', '--selector', `unix:uid:${process.getuid!()}`]);
  const token = /^Token: (\S+)$/m.exec(await cli(['token', 'generate', '--datacenter', 'east']))![1]!;
  const bundle = path.join(state, 'bundle.pem');
  fs.writeFileSync(bundle, await cli(['bundle', 'show']));
  const tokenFile = path.join(state, 'join-token');
  fs.writeFileSync(tokenFile, token, { mode: 0o600 });

  const socket = path.join(state, 'agent', 'api.sock');
  const agent = spawn(
    process.execPath,
    [agentMain, 'run', '--server-address', `127.0.0.1:${server.port()}`, '--trust-bundle', bundle, '--join-token-file', tokenFile, '--socket-path', socket, '--data-dir', path.join(state, 'agent-data')],
    tetheredDaemon(process.env),
  );
  let agentOut = '';
  agent.stdout.on('data', (d: Buffer) => (agentOut += d.toString()));
  agent.stderr.on('data', (d: Buffer) => (agentOut += d.toString()));
  td.after(
    () =>
      new Promise((resolve) => {
        if (agent.exitCode !== null || agent.signalCode !== null) return resolve(undefined);
        agent.once('exit', resolve);
        agent.kill('SIGTERM');
      }),
  );
  // Readiness of a process is an external event: poll the agent's own health check with a generous bound.
  for (let attempt = 0; ; attempt++) {
    if (agent.exitCode !== null) assert.fail(`meshid-agent exited with ${agent.exitCode}:\n${agentOut}`);
    if ((await runNode(agentMain, ['healthcheck', '--socket-path', socket])).code === 0) break;
    if (attempt > 200) assert.fail(`meshid-agent did not become healthy:\n${agentOut}`);
    await new Promise((r) => setTimeout(r, 100));
  }

  const out = path.join(state, 'svid');
  fs.mkdirSync(out);
  const fetched = await runNode(agentMain, ['api', 'fetch', 'x509', '--write', out], { SPIFFE_ENDPOINT_SOCKET: `unix://${socket}` });
  assert.equal(fetched.code, 0, fetched.err);
  assert.match(fetched.out, /SPIFFE ID\s+: spiffe:\/\/example\.org\/web$/m);
  assert.ok(fs.existsSync(path.join(out, 'svid.0.pem')) && fs.existsSync(path.join(out, 'svid.0.key')));
});
