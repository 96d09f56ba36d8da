/**
 * meshid-server's and meshid-agent's CLIs given a socket path longer than a Unix socket path may be: Node would connect to the path
 * cut to its first 108 bytes, which may be another program's socket. A listener sits at that shorter path here, so a
 * CLI that connected there is caught even when it then fails: nothing may reach it, and the error names the length.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import path from 'node:path';
import { tempDir } from '../support/server-kit.js';
import { runNode, SERVER_MAIN, type CliResult } from '../support/server-process.js';
import { AGENT_MAIN } from '../support/cluster.js';

let dir: string;
let cleanup: () => void;
let longPath: string;
let listener: net.Server;
let accepted = 0;

before(async () => {
  ({ dir, cleanup } = tempDir('meshid-long-socket-'));
  longPath = path.join(dir, `${'s'.repeat(Math.max(1, 140 - dir.length))}.sock`);
  assert.ok(Buffer.byteLength(longPath) > 108);
  // Where Node's connect ends up: sun_path's 108 bytes, no terminating NUL.
  const cutShort = longPath.slice(0, 108);
  listener = net.createServer((c) => {
    accepted++;
    c.destroy();
  });
  await new Promise<void>((resolve) => listener.listen(cutShort, resolve));
});

after(async () => {
  await new Promise((resolve) => listener?.close(resolve));
  cleanup?.();
});

function assertTooLong(r: CliResult, source: string): void {
  assert.equal(r.code, 1, `expected exit 1, got ${r.code}; stdout: ${r.out}; stderr: ${r.err}`);
  assert.equal(r.out, '');
  assert.equal(r.err.split('\n').filter((l) => l !== '').length, 1, `expected one stderr line, got:\n${r.err}`);
  const bytes = Buffer.byteLength(longPath);
  assert.equal(
    r.err.trimEnd(),
    `Error: InvalidArgument: ${source}: ${longPath} is ${bytes} bytes long, more than the 107 a Unix socket path may have (the kernel's sun_path), ` +
      'so no daemon listens there: give the path the daemon was started with',
  );
}

test('an admin command given an --admin-socket over 107 bytes refuses it and connects nowhere', async () => {
  assertTooLong(await runNode(SERVER_MAIN, ['entry', 'show', '--admin-socket', longPath]), '--admin-socket');
  assertTooLong(await runNode(SERVER_MAIN, ['healthcheck', '-socketPath', longPath, '-verbose']), '--admin-socket');
  assert.equal(accepted, 0, 'the CLI connected to the path cut short');
});

test('the same path from MESHID_ADMIN_SOCKET is refused naming the variable', async () => {
  assertTooLong(await runNode(SERVER_MAIN, ['agent', 'list'], { MESHID_ADMIN_SOCKET: longPath }), 'MESHID_ADMIN_SOCKET');
  assert.equal(accepted, 0, 'the CLI connected to the path cut short');
});

test('a relative path is measured as resolved, the way it is connected to', async () => {
  const relative = path.basename(longPath).slice(0, 100);
  const r = await runNode(SERVER_MAIN, ['token', 'generate', '--admin-socket', relative], {}, dir);
  const resolved = path.join(dir, relative);
  assert.equal(r.code, 1);
  assert.match(r.err, new RegExp(`^Error: InvalidArgument: --admin-socket: ${resolved.replace(/[.]/g, '\\.')} is ${Buffer.byteLength(resolved)} bytes long`));
  assert.equal(accepted, 0, 'the CLI connected to the path cut short');
});

test("meshid-agent's CLI given a --socket-path over 107 bytes, or SPIFFE_ENDPOINT_SOCKET naming one, refuses it and connects nowhere", async () => {
  assertTooLong(await runNode(AGENT_MAIN, ['api', 'fetch', 'x509', '--socket-path', longPath]), '--socket-path');
  assertTooLong(await runNode(AGENT_MAIN, ['healthcheck', '--socket-path', longPath]), '--socket-path');
  assertTooLong(await runNode(AGENT_MAIN, ['api', 'fetch', 'jwt', '--audience', 'a'], { SPIFFE_ENDPOINT_SOCKET: `unix://${longPath}` }), 'SPIFFE_ENDPOINT_SOCKET');
  assert.equal(accepted, 0, 'the CLI connected to the path cut short');
});
