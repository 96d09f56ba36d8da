import { createRequire } from 'node:module';
import path from 'node:path';
import { packageRoot } from '../../common/paths.js';

/**
 * Typed access to native/peercred, the N-API addon for the Unix-socket peer credentials Node has no API for
 * (WL-Endpoint §7 / SPEC-NOTES §7: workloads are identified out of band, from the socket's peer).
 */

/** The credentials the kernel recorded for a Unix-socket peer when it called connect(). */
export interface PeerCred {
  /** 0 when the peer lives in a pid namespace this process cannot see. */
  readonly pid: number;
  readonly uid: number;
  readonly gid: number;
}

/**
 * A connected caller as the agent knows it: SO_PEERCRED plus a pidfd pinning the very process that connected
 * (-1 when the kernel offers none; attestation then falls back to /proc starttime checks). `closed` turns true when
 * the connection ends: the pidfd is closed then and its number may already belong to something else.
 */
export interface PeerInfo extends PeerCred {
  readonly pidfd: number;
  readonly closed: boolean;
}

/** The addon's functions. Errors are thrown like Node system errors: `code` ("EBADF"), `errno`, `syscall`. */
export interface PeerCredentials {
  /** getsockopt(SO_PEERCRED) on a connected Unix socket. */
  peerCred(fd: number): PeerCred;
  /** A pidfd for the peer: SO_PEERPIDFD (Linux ≥ 6.5), else pidfd_open(pid) (≥ 5.3), else -1. Close it with closeFd. */
  peerPidfd(fd: number): number;
  /** False once the process has exited and been reaped (a zombie still counts as alive). */
  pidfdAlive(pidfd: number): boolean;
  closeFd(fd: number): void;
}

export const ADDON_PATH = path.join(packageRoot, 'native', 'peercred', 'build', 'Release', 'peercred.node');

let loaded: PeerCredentials | undefined;

/**
 * Loads the addon once. Throws an Error telling the operator how to build it when the .node file is missing
 * (it is compiled by `npm install` through the `prepare` script).
 */
export function peerCredentials(): PeerCredentials {
  if (loaded !== undefined) return loaded;
  if (process.platform !== 'linux') {
    throw new Error(`meshid: workload attestation needs Linux peer credentials; this is ${process.platform}`);
  }
  try {
    loaded = createRequire(import.meta.url)(ADDON_PATH) as PeerCredentials;
  } catch (err) {
    const missing = (err as NodeJS.ErrnoException).code === 'MODULE_NOT_FOUND';
    throw new Error(
      missing
        ? `meshid: the peer-credentials addon is not built (${ADDON_PATH} is missing): run "npm install" ` +
            '(or "npm run build:native") in the meshid package directory; it needs a C compiler and the Node headers'
        : `meshid: cannot load the peer-credentials addon ${ADDON_PATH}: ${(err as Error).message}`,
      { cause: err },
    );
  }
  return loaded;
}
