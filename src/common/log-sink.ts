import { pino } from 'pino';

/** What stderr refused while it could not be written, reported once it takes lines again. */
export interface LostLogLines {
  /** The error code of the first refused write (ENOSPC, EIO, ...). */
  readonly reason: string;
  /** Lines dropped because more than HELD_BYTES_LIMIT waited. */
  readonly droppedLines: number;
}

/** Log lines held while stderr refuses writes; lines beyond this are dropped and counted. */
export const HELD_BYTES_LIMIT = 1024 * 1024;

/**
 * stderr as a daemon's log destination, which never throws into the code that logs. pino's own destination throws a
 * refused write (ENOSPC from a log file on a full disk, EIO from a terminal that hung up) out of the `log.info(...)`
 * that caused it: in the middle of whatever the daemon was doing (saving the identity a join token was just spent on,
 * say), and then out of the process. A log line is never worth that: lines stderr refuses are held (up to
 * HELD_BYTES_LIMIT) and written once it takes lines again, newer ones are dropped meanwhile, and `onRecovered` is
 * told (in a later turn, so it may log) what was lost. A reader that left (EPIPE) ends logging for good (pino's own
 * handling of a broken pipe), without ending the process either.
 */
export function stderrSink(onRecovered: (lost: LostLogLines) => void, fd = 2): pino.DestinationStream {
  const stream = pino.destination({ fd, sync: true, maxLength: HELD_BYTES_LIMIT });
  let refused: string | undefined;
  let dropped = 0;
  stream.on('error', (err: NodeJS.ErrnoException) => {
    refused ??= err.code ?? err.message;
  });
  stream.on('drop', () => {
    dropped++;
  });
  stream.on('write', () => {
    if (refused === undefined) return;
    const lost: LostLogLines = { reason: refused, droppedLines: dropped };
    refused = undefined;
    dropped = 0;
    setImmediate(() => onRecovered(lost));
  });
  return stream;
}
