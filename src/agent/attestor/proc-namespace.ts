import { failedPrecondition } from '../../common/errors.js';
import type { ProcHooks } from './proc-hooks.js';

/**
 * Refuses a /proc that is not the proc file system of the agent's own pid namespace. The pids SO_PEERCRED reports are
 * the peers' pids in the agent's namespace, and the attestor reads /proc/<pid>; in a /proc of another namespace (an
 * agent started with `unshare -p --fork` but no --mount-proc, or a container of its own pid namespace with the host's
 * /proc mounted on /proc) that names another process, and the pidfd checks cannot tell: the caller is alive, only
 * the directory is someone else's. A workload could pick its pid (ns_last_pid, or many forks) to be attested as a
 * host process of its uid running a trusted binary.
 *
 * /proc/self/status's NSpid line lists the agent's pid in every namespace from /proc's down to its own (Linux ≥ 4.1):
 * one entry equal to the agent's pid means /proc is its own namespace's. An older kernel shows only Pid, /proc's view.
 * Throws MeshidError('failed_precondition') naming what to change.
 */
export function checkProcPidNamespace(hooks: Pick<ProcHooks, 'readText'>, ownPid: number = process.pid): void {
  const remedy =
    'mount the proc file system of the agent\'s own pid namespace on /proc (e.g. "unshare --pid --fork --mount-proc", ' +
    "a container's own /proc), or run the agent in the host pid namespace";
  let status: string;
  try {
    status = hooks.readText('/proc/self/status');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    // ENOENT: /proc/self does not resolve, so the agent is not in /proc's namespace at all.
    throw failedPrecondition(`workload attestation cannot read /proc/self/status (${code}): ${remedy}`, err);
  }
  const line = (name: string): string[] | undefined => new RegExp(`^${name}:\\s*(.*)$`, 'm').exec(status)?.[1]?.trim().split(/\s+/);
  const seen = line('NSpid') ?? line('Pid');
  if (seen !== undefined && seen.length === 1 && seen[0] === String(ownPid)) return;
  throw failedPrecondition(
    `/proc belongs to another pid namespace than the agent's (the agent is pid ${ownPid}; /proc/self/status says ` +
      `${seen === undefined ? 'no pid' : `pid ${seen.join(' / ')}`}), so the pids of the agent's socket peers would name other processes ` +
      `in it: ${remedy}`,
  );
}
