import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

/** Thrown by stageSnapshot when the snapshot it writes is no longer wanted (`cancelled` answered true). */
export class StagingCancelled extends Error {
  constructor() {
    super('the snapshot being written is no longer wanted');
  }
}

/**
 * Writes `chunks` to a new temp file next to `file` (a name removeStaleTempFiles knows) and fsyncs it, off the event
 * loop: each chunk is encoded in a turn of its own and written in libuv's thread pool, so that ~20 MB of state (10,000
 * SVIDs with their keys) never holds the event loop for more than one chunk's encoding. Returns the temp file and the
 * bytes written; the caller renames it into place. Any failure, or `cancelled()` answering true between two chunks,
 * removes the temp file (a retry must not leave one more behind, holding keys) and rejects.
 */
export async function stageSnapshot(file: string, mode: number, chunks: Iterable<string>, cancelled: () => boolean): Promise<{ tmp: string; bytes: number }> {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
  const handle = await fs.promises.open(tmp, 'wx', mode);
  let bytes = 0;
  try {
    for (const chunk of chunks) {
      if (cancelled()) throw new StagingCancelled();
      const data = Buffer.from(chunk, 'utf8');
      // A short write (a disk filling up) is continued, not taken for the whole.
      for (let offset = 0; offset < data.length; ) {
        const { bytesWritten } = await handle.write(data, offset);
        if (bytesWritten <= 0) throw new Error(`write made no progress at byte ${offset} of ${data.length}`);
        offset += bytesWritten;
      }
      bytes += data.length;
    }
    if (cancelled()) throw new StagingCancelled();
    await handle.sync();
    await handle.close();
  } catch (err) {
    await handle.close().catch(() => undefined);
    await fs.promises.rm(tmp, { force: true });
    throw err;
  }
  return { tmp, bytes };
}
