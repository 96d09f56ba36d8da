import { MeshidError } from '../../common/errors.js';

/** A workload attestation failure (SPEC-NOTES §7: UNAVAILABLE, "workload attestation failed: ..."). */
export function failed(reason: string, cause?: unknown): MeshidError {
  return new MeshidError('unavailable', `workload attestation failed: ${reason}`, { cause });
}

const OUTLIVED = 'connectionOutlivedCaller';

/**
 * A failure that will repeat on every call over this connection, because the process that connected is no longer
 * there as it connected: exited (the connection lives on in a process it was handed to) or running under other ids.
 * Closing the connection is the way out: the holder reconnects, and the new connection's credentials are its own.
 */
export function outlived(reason: string, cause?: unknown): MeshidError {
  return new MeshidError('unavailable', `workload attestation failed: ${reason}`, { cause, data: { [OUTLIVED]: true } });
}

/** Whether an attestation failure means the connection should be closed (see outlived()). */
export function connectionOutlivedCaller(err: unknown): boolean {
  return err instanceof MeshidError && err.data?.[OUTLIVED] === true;
}
