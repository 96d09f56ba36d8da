import { performance } from 'node:perf_hooks';
import type { UntypedServiceImplementation } from '@grpc/grpc-js';
import type { Clock } from '../../common/clock.js';
import type { Logger } from '../../common/log.js';
import { aborted } from '../../common/errors.js';
import { checkBackupTarget } from '../backup/backup-target.js';
import { writeBackup, type BackupSources } from '../backup/data-dir-backup.js';
import { fullDiskCause } from '../backup/full-disk.js';
import { unary } from './handler.js';

/**
 * Admin API: backups of the running server's data dir (meshid.admin.v1.Backups). The server writes them, into a
 * directory on its own host: it owns the data dir and the CA keys, and the admin socket's caller is already trusted
 * with both. The backup holds the CA private keys; nothing of them is logged. `stopping` (aborted with the error to
 * answer) ends a backup in progress when the server stops, as the caller going away does: neither leaves a directory
 * that looks like a backup.
 */
export function backupService(sources: BackupSources, stopping: AbortSignal, clock: Clock, log: Logger): UntypedServiceImplementation {
  return {
    WriteBackup: unary(log, 'WriteBackup', async (req: { dir?: string }, call) => {
      const target = checkBackupTarget(req.dir ?? '', sources.dataDir);
      const gone = new AbortController();
      call.on('cancelled', () => gone.abort(aborted('the backup was cancelled by its caller (gone, or past its deadline); nothing of it was kept')));
      const started = performance.now();
      const result = await writeBackup(sources, target, AbortSignal.any([gone.signal, stopping])).catch((err: unknown) => {
        // The caller is told the disk is full; the operator, who may not be the caller, reads where and which errno.
        const full = fullDiskCause(err);
        if (full !== undefined) log.warn({ dir: target.dir, ...full, reason: (err as Error).message }, 'backup refused: no room to write it');
        throw err;
      });
      const tookMs = Math.round(performance.now() - started);
      log.info(
        { dir: result.dir, files: result.files.length, caKeys: result.caKeys, datastoreBytes: result.datastoreSize, tookMs },
        'backup written (it holds the CA private keys)',
      );
      return {
        dir: result.dir,
        files: result.files.map((f) => ({ path: f.path, size: f.size })),
        datastore_size: result.datastoreSize,
        ca_keys: result.caKeys,
        taken_at: Math.floor(clock.now() / 1000),
        took_ms: tookMs,
      };
    }),
  };
}
