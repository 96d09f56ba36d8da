import fs from 'node:fs';
import net from 'node:net';
import { failedPrecondition, invalidArgument } from './errors.js';

/**
 * Linux's sun_path is 108 bytes. Node binds a path of all 108 (no NUL), but Envoy and gRPC C-core clients refuse a
 * path that leaves no room for the terminating NUL, so the workloads' side could not connect to it: 107.
 */
const MAX_SOCKET_PATH_BYTES = 107;

/** Why no socket can be bound or connected to at `socketPath`, for its length, or undefined when one can. */
export function socketPathLengthProblem(socketPath: string): string | undefined {
  const bytes = Buffer.byteLength(socketPath);
  if (bytes <= MAX_SOCKET_PATH_BYTES) return undefined;
  return `${socketPath} is ${bytes} bytes long, more than the ${MAX_SOCKET_PATH_BYTES} a Unix socket path may have (the kernel's sun_path)`;
}

/**
 * A daemon's socket path setting checked when the config is compiled: `validate` then refuses what `run` would, and
 * names the setting (`setting`, "--socket-path, socket_path"). Returns the path.
 */
export function checkSocketPathLength(socketPath: string, setting: string): string {
  const problem = socketPathLengthProblem(socketPath);
  if (problem !== undefined) throw invalidArgument(`${setting}: ${problem}: choose a shorter path`);
  return socketPath;
}

/**
 * Makes `socketPath` free to bind: a socket file left by a previous run that nobody listens on any more is removed
 * (WL-Endpoint practice, SPEC-NOTES §7: SPIRE removes a stale socket at start). Anything else is refused rather
 * than deleted: a regular file or directory may be someone's data, and a socket that accepts connections belongs to
 * a live process (another agent) that we must not silently take the path from. `setting` names the option that chose
 * the path ("--admin-socket, admin_socket"), so a refusal says what to change.
 */
export async function removeStaleSocket(socketPath: string, setting?: string): Promise<void> {
  if (await staleSocketAt(socketPath, setting)) fs.unlinkSync(socketPath);
}

/**
 * Whether a stale socket file is at `socketPath` (false: nothing is there), refusing what removeStaleSocket refuses
 * (a file that is not a socket, a live socket); it removes nothing. A server's first start asks it before claiming
 * its data dir (server/listen-probe.ts).
 */
export async function staleSocketAt(socketPath: string, setting?: string): Promise<boolean> {
  // Node binds a path over 108 bytes cut short, elsewhere (in a parent directory, beside the private one), and the
  // chmod that follows fails with an ENOENT naming the whole path: refused here, with what to do.
  const tooLong = socketPathLengthProblem(socketPath);
  if (tooLong !== undefined) throw failedPrecondition(`${setting === undefined ? '' : `${setting}: `}${tooLong}: choose a shorter path`);
  const named = setting === undefined ? socketPath : `${socketPath} (${setting})`;
  let stat: fs.Stats;
  try {
    stat = fs.lstatSync(socketPath);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
  if (!stat.isSocket()) {
    throw failedPrecondition(`${named} exists and is not a Unix socket; refusing to replace it (move it away or pick another socket path)`);
  }
  if (await socketAcceptsConnections(socketPath)) {
    throw failedPrecondition(`${named} is in use: another process accepts connections on it (stop it or pick another socket path)`);
  }
  return true;
}

/**
 * Connecting is the only reliable liveness test for a socket file. A Unix-socket connect() never waits on the
 * network: it succeeds, or fails at once with ECONNREFUSED (nobody listening: stale) or EAGAIN (listener's backlog
 * full: live). Any other failure (EACCES, ...) is passed on: we cannot tell, so we do not delete.
 */
function socketAcceptsConnections(socketPath: string): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const probe = net.connect(socketPath);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', (err: NodeJS.ErrnoException) => {
      probe.destroy();
      if (err.code === 'ECONNREFUSED') resolve(false);
      else if (err.code === 'EAGAIN') resolve(true);
      else reject(err);
    });
  });
}
