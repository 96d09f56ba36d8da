/**
 * The unix attestor behind a /proc mounted with hidepid=invisible, for real: an attestor running as uid 65534 in a
 * mount namespace of its own (unshare -m), where a proc instance with that option covers /proc, attests callers of
 * another uid and of its own. The other uid's process is hidden from it (open /proc/<pid>: ENOENT) while it runs.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { packageRoot } from '../../../src/common/paths.js';
import { ClientProcess, publicTempDir } from '../../support/peer-process.js';
import { teardown } from '../../support/teardown.js';
import { tetherGroup } from '../../support/tethered-daemon.js';

const mount = (hidepid: string): string => `mount -t proc -o hidepid=${hidepid} proc /proc`;
const skip =
  spawnSync('unshare', ['-m', 'sh', '-c', `${mount('invisible')} && exec setpriv --reuid=65534 --regid=65534 --clear-groups true`], { stdio: 'ignore' }).status === 0
    ? false
    : 'needs unshare(1), setpriv(1) and a kernel that mounts proc with hidepid= in a mount namespace (as root)';

/** Runs in the hidden /proc as 65534: attests each of `count` connections and prints one JSON line per outcome. */
const ATTESTOR = `
  const [peerProcess, attestorModule, failureModule, socketPath, count] = process.argv.slice(1);
  const { PeerListener } = await import(peerProcess);
  const { UnixWorkloadAttestor } = await import(attestorModule);
  const { connectionOutlivedCaller } = await import(failureModule);
  const listener = await PeerListener.listen(socketPath);
  process.stdout.write('listening\\n');
  const attestor = new UnixWorkloadAttestor({ sha256: false });
  for (let i = 0; i < Number(count); i++) {
    const { peer } = await listener.next();
    let outcome;
    try {
      outcome = { uid: peer.uid, selectors: attestor.attest(peer).map((s) => s.value) };
    } catch (e) {
      outcome = { uid: peer.uid, error: e.message, outlived: connectionOutlivedCaller(e) };
    }
    process.stdout.write(JSON.stringify(outcome) + '\\n');
  }
  await listener.close();
`;

// invisible (hidepid=2): another uid's /proc/<pid> does not exist for the agent; noaccess (1): it cannot be opened.
for (const [hidepid, code] of [['invisible', 'ENOENT'], ['noaccess', 'EPERM']] as const) {
  test(`a running caller hidden by hidepid=${hidepid} is refused as hidden, its connection kept; one of the same uid attests`, { skip }, async (t) => {
    const dir = publicTempDir('meshid-hidepid-');
    teardown(t).after(() => fs.rmSync(dir, { recursive: true, force: true }));
    // The attestor, as 65534, makes its socket here.
    fs.chownSync(dir, 65534, 65534);
    const socketPath = path.join(dir, 'agent.sock');
    const modules = [
      'dist/test/support/peer-process.js',
      'dist/src/agent/attestor/unix-workload-attestor.js',
      'dist/src/agent/attestor/attestation-failure.js',
    ].map((m) => path.join(packageRoot, m));
    const node = `${JSON.stringify(process.execPath)} --input-type=module -e "$0" "$@"`;
    const attestor = spawn(
      'unshare',
      ['-m', 'sh', '-c', `${mount(hidepid)} && exec setpriv --reuid=65534 --regid=65534 --clear-groups sh -c '${node}' "$0" "$@"`, ATTESTOR, ...modules, socketPath, '2'],
      // A process group of its own, to be killed whole: the node under the sh/setpriv chain is not the pid spawned.
      { stdio: ['ignore', 'pipe', 'pipe'], detached: true },
    );
    // It waits for two connections: a failure before both are made would leave it running, holding this file's pipes
    // open until the runner's timeout.
    const tether = tetherGroup(attestor.pid!);
    teardown(t).after(() => {
      tether.release();
      try {
        process.kill(-attestor.pid!, 'SIGKILL');
      } catch (err) {
        // ESRCH: the whole group has exited already, as when the test passed.
        if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
      }
    });
    let out = '';
    let err = '';
    attestor.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const listening = new Promise<void>((resolve, reject) => {
      attestor.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('listening\n')) resolve();
      });
      attestor.on('exit', () => reject(new Error(`the attestor exited: ${out}${err}`)));
    });
    const exited = new Promise<number | null>((resolve) => attestor.on('close', resolve));
    await listening;

    // Root's process: hidden from 65534. Then 65534's own: visible.
    const hidden = new ClientProcess(socketPath);
    teardown(t).after(() => hidden.stop());
    await new Promise<void>((resolve) => hidden.child.stdout!.once('data', () => resolve()));
    const own = new ClientProcess(socketPath, { uid: 65534, gid: 65534 });
    teardown(t).after(() => own.stop());
    assert.equal(await exited, 0, err);
    const [first, second] = out.split('\n').slice(1).filter((l) => l !== '').map((l) => JSON.parse(l) as { uid: number; error?: string; outlived?: boolean; selectors?: string[] });
    assert.equal(first?.uid, 0);
    assert.match(first?.error ?? '', new RegExp(String.raw`^workload attestation failed: cannot open /proc/\d+ \(${code}\) though the process runs: .*hidepid`), JSON.stringify(first));
    assert.equal(first?.outlived, false, 'a hidden caller is not an exited one: its connection is not closed');
    assert.equal(second?.uid, 65534);
    assert.ok(second?.selectors?.includes('uid:65534'), JSON.stringify(second));
  });
}
