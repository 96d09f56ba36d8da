import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import { ADMIN_HEALTH_SERVICE, AdminClient } from '../../src/server/cli/admin-client.js';
import { outputRead } from './exited-and-read.js';
import { nextOutputOr } from './next-output.js';

/** A bound on a server that never gets ready, not a timing under test. */
const READY_BOUND_MS = 30_000;

/** Whether the admin socket answers SERVING for the service `meshid-server healthcheck` asks about. */
async function answersServing(adminSocket: string): Promise<boolean> {
  // A client a try: a channel that failed to connect would wait out grpc-js's reconnect backoff on the next call.
  const admin = new AdminClient(adminSocket, 2000);
  try {
    return (await admin.call('Health', 'Check', { service: ADMIN_HEALTH_SERVICE })).status === 'SERVING';
  } catch {
    return false;
  } finally {
    admin.close();
  }
}

/**
 * Resolves once a just-spawned `meshid-server run` answers SERVING on `adminSocket`, as `meshid-server healthcheck`
 * would find; rejects, with what it printed (`output`), if it ends first or is not ready within a generous bound.
 *
 * Readiness is an external event (a process binding its socket). It is checked whenever the server writes (its
 * "meshid-server is running" line comes once it serves) and otherwise every 100 ms, and asked in-process: a
 * `meshid-server healthcheck` child a try cost a node start, about 0.7 s of a loaded machine's wall time each time.
 */
export async function serverReady(child: ChildProcess, adminSocket: string, output: () => string): Promise<void> {
  const until = Date.now() + READY_BOUND_MS;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      await outputRead(child);
      throw new Error(`meshid-server exited with ${child.exitCode ?? child.signalCode}:\n${output()}`);
    }
    if (fs.existsSync(adminSocket) && (await answersServing(adminSocket))) return;
    if (Date.now() > until) throw new Error(`meshid-server did not become healthy:\n${output()}`);
    await nextOutputOr(child, 100);
  }
}
