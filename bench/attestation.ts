/**
 * P2, one part of it — the agent's per-call workload attestation of this process over a real Unix-socket
 * connection, against one read of /proc/<pid>/status in the same run (the read every call must make while the
 * attestor re-checks uid/gid/groups per call). What a re-read interval for a remembered caller could save, measured.
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { peerCredentials, type PeerInfo } from '../src/agent/attestor/peer-credentials.js';
import { UnixWorkloadAttestor } from '../src/agent/attestor/unix-workload-attestor.js';
import { tempDir } from '../test/support/server-kit.js';
import type { BenchResult } from './report.js';

/** Microseconds per call of `op`, over `ms` after an unmeasured warm-up. */
function microsPerCall(op: () => unknown, ms: number): number {
  for (let i = 0; i < 2_000; i++) op();
  let n = 0;
  const start = process.hrtime.bigint();
  let elapsedNs = 0n;
  while (elapsedNs < BigInt(ms) * 1_000_000n) {
    for (let i = 0; i < 100; i++) op();
    n += 100;
    elapsedNs = process.hrtime.bigint() - start;
  }
  return Number(elapsedNs) / 1_000 / n;
}

/** This process connected to itself over a Unix socket, as the agent sees a workload: SO_PEERCRED and a pidfd. */
async function selfAsPeer(dir: string): Promise<{ peer: PeerInfo; close: () => void }> {
  const socket = path.join(dir, 'attest.sock');
  const server = net.createServer();
  const accepted = new Promise<net.Socket>((resolve) => server.once('connection', resolve));
  await new Promise<void>((resolve) => server.listen(socket, resolve));
  const client = net.connect(socket);
  const connection = await accepted;
  const fd = (connection as unknown as { _handle: { fd: number } })._handle.fd;
  const addon = peerCredentials();
  const pidfd = addon.peerPidfd(fd);
  return {
    peer: { ...addon.peerCred(fd), pidfd, closed: false },
    close: () => {
      if (pidfd >= 0) addon.closeFd(pidfd);
      client.destroy();
      connection.destroy();
      server.close();
    },
  };
}

export async function benchAttestation(seconds: number): Promise<BenchResult[]> {
  const { dir, cleanup } = tempDir('meshid-bench-attest-');
  const { peer, close } = await selfAsPeer(dir);
  try {
    const ms = Math.round((seconds * 1000) / 3);
    const statusPath = `/proc/${process.pid}/status`;
    const baseline = microsPerCall(() => fs.readFileSync(statusPath, 'utf8'), ms);
    const remembering = new UnixWorkloadAttestor();
    const recalled = microsPerCall(() => remembering.attest(peer), ms);
    // Memo off: every call opens /proc/<pid>, reads it all and looks the names up (the executable's digest stays cached).
    const forgetting = new UnixWorkloadAttestor({ memoEntries: 0 });
    const full = microsPerCall(() => forgetting.attest(peer), ms);
    return [
      { name: 'P2 baseline: one read of /proc/<pid>/status', value: baseline, unit: 'µs' },
      { name: 'P2 attestation of a remembered caller (status, executable link and file, account files, pidfd twice)', value: recalled, unit: 'µs', ratio: recalled / baseline },
      { name: 'P2 attestation without the memo (digest cached)', value: full, unit: 'µs', ratio: full / baseline },
    ];
  } finally {
    close();
    cleanup();
  }
}
