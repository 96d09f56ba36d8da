import { isMeshidError, MeshidError } from '../../common/errors.js';

/** Where fullDisk keeps the file that was being written, for a cause that names none (SQLite's SQLITE_FULL). */
const WRITTEN = 'fullDiskWritten';

/**
 * A backup or restore refused for a full disk: RESOURCE_EXHAUSTED with `message` for the caller, and the errno beneath
 * kept as its cause, which the server logs (fullDiskCause) and the answer leaves out. `written` is the file the write
 * went to, when the cause cannot say (SQLite's SQLITE_FULL carries no path).
 */
export function fullDisk(message: string, err: unknown, written?: string): MeshidError {
  return new MeshidError('resource_exhausted', message, { cause: err, ...(written !== undefined && { data: { [WRITTEN]: written } }) });
}

/** What the server's log says of a backup refused for a full disk: where the write failed and the errno. */
export interface FullDiskCause {
  /** The errno (ENOSPC, EDQUOT) or SQLite code (SQLITE_FULL) beneath the refusal, when one was kept. */
  readonly errno?: string;
  /** The path the failed write went to: the call's, or the scratch snapshot in the data dir (a SQLite write names none). */
  readonly path?: string;
  /**
   * Instead of `path`, when the call wrote through a directory's descriptor (anchored-directory.ts): the name written
   * in that directory of the backup, since /proc/self/fd/N means nothing once the call is over.
   */
  readonly file?: string;
}

const THROUGH_DESCRIPTOR = /^\/proc\/self\/fd\/\d+\/(.+)$/;

/**
 * The cause of a backup or restore refused RESOURCE_EXHAUSTED, for the log; undefined for any other error. The answer
 * names the directory and "the disk is full"; the errno and the path written are what an operator (or a disk-usage
 * alert) matches a log line against. Only codes and paths: never anything read or written.
 */
export function fullDiskCause(err: unknown): FullDiskCause | undefined {
  if (!isMeshidError(err, 'resource_exhausted')) return undefined;
  let cause: unknown = err.cause;
  // The datastore's and the storage helpers' wrappers, seen through to the system's error.
  while (cause instanceof MeshidError) cause = cause.cause;
  const { code, path, dest } = (cause ?? {}) as { code?: unknown; path?: unknown; dest?: unknown };
  // A failed copy or rename names its source as `path` and what it was writing as `dest`; a failed SQLite write
  // names nothing, and the backup's scratch snapshot in the data dir, not the backup dir, is then what found no room.
  const given = err.data?.[WRITTEN];
  const written = typeof dest === 'string' ? dest : typeof path === 'string' ? path : given;
  const file = typeof written === 'string' ? THROUGH_DESCRIPTOR.exec(written)?.[1] : undefined;
  return {
    ...(typeof code === 'string' && { errno: code }),
    ...(file !== undefined ? { file } : typeof written === 'string' && { path: written }),
  };
}
