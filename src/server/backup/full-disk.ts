import { isMeshidError, MeshidError } from '../../common/errors.js';

/**
 * A backup or restore refused for a full disk: RESOURCE_EXHAUSTED with `message` for the caller, and the errno beneath
 * kept as its cause, which the server logs (fullDiskCause) and the answer leaves out.
 */
export function fullDisk(message: string, err: unknown): MeshidError {
  return new MeshidError('resource_exhausted', message, { cause: err });
}

/** What the server's log says of a backup refused for a full disk: where the write failed and the errno. */
export interface FullDiskCause {
  /** The errno (ENOSPC, EDQUOT) or SQLite code (SQLITE_FULL) beneath the refusal, when one was kept. */
  readonly errno?: string;
  /** The path the failed call was writing, when it named one. */
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
  // A failed copy or rename names its source as `path` and what it was writing as `dest`.
  const written = typeof dest === 'string' ? dest : path;
  const file = typeof written === 'string' ? THROUGH_DESCRIPTOR.exec(written)?.[1] : undefined;
  return {
    ...(typeof code === 'string' && { errno: code }),
    ...(file !== undefined ? { file } : typeof written === 'string' && { path: written }),
  };
}
