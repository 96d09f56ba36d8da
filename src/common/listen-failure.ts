import { failedPrecondition, type MeshidError } from './errors.js';

/**
 * A TCP listener that could not start, as the operator fixes it: which setting named the address and what is wrong
 * with it. grpc-js words a failed bind as "No address added out of total 1 resolved errors: [listen EADDRINUSE: …]"
 * and node:net as "listen EADDRINUSE: …"; both carry the errno, which is all this reads.
 */
export function listenFailure(err: unknown, address: string, setting: string): MeshidError {
  const text = err instanceof Error ? err.message : String(err);
  const where = `cannot listen on ${address} (${setting})`;
  const errno = /\b(EADDRINUSE|EADDRNOTAVAIL|EACCES|EPERM)\b/.exec(text)?.[1];
  switch (errno) {
    case 'EADDRINUSE':
      return failedPrecondition(`${where}: another process is listening on that port; stop it or choose another port`, err);
    case 'EADDRNOTAVAIL':
      return failedPrecondition(`${where}: no network interface of this host has that address; use one of its addresses, or 0.0.0.0 for all`, err);
    case 'EACCES':
    case 'EPERM': {
      const port = Number(/:(\d+)$/.exec(address)?.[1] ?? NaN);
      // Only a port below 1024 is privileged by its number; above it, something configured on the host refuses it.
      if (!(port >= 1024)) return failedPrecondition(`${where}: permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE); choose a port from 1024 up`, err);
      return failedPrecondition(
        `${where}: permission denied (${errno}): a security policy (SELinux, AppArmor, a seccomp profile) or a raised net.ipv4.ip_unprivileged_port_start forbids this process that port`,
        err,
      );
    }
    default:
      if (/Name resolution failed/i.test(text)) return failedPrecondition(`${where}: the host name does not resolve; use an IP address or a name this host resolves`, err);
      return failedPrecondition(`${where}: ${text}`, err);
  }
}
