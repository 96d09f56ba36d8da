/**
 * SQLite's integrity check of a backup's datastore snapshot, run in a worker thread: it reads every page, which on a
 * datastore of some size takes seconds that the server's event loop (agent API, admin API, SDS of nobody, but every
 * Sync and signing) must not spend waiting on it. The worker opens the file read-only by its path, so the path must
 * be one only the server's user can change (the scratch snapshot in the data dir, data-dir-backup.ts).
 */
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import { integrityCheckProblems } from '../datastore/sqlite-datastore.js';

/** How many problems a refusal names: the first few say what is wrong; the rest are more of the same. */
const PROBLEMS_NAMED = 3;

// better-sqlite3 is loaded in the worker by the path this module resolves it to: the worker runs as an eval'd script,
// whose require() would resolve from the working directory, and a bundle (scripts/bundle.mjs) has no file beside it.
const sqliteModule = (): string => createRequire(import.meta.url).resolve('better-sqlite3');

const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.module);
let db;
try {
  db = new Database(workerData.file, { readonly: true, fileMustExist: true });
  parentPort.postMessage({ rows: db.pragma('integrity_check(' + workerData.limit + ')').map((r) => r.integrity_check) });
} catch (err) {
  parentPort.postMessage({ error: String(err && err.message || err) });
} finally {
  if (db) db.close();
}
`;

/**
 * The first problems SQLite's integrity check finds in `file`; empty for a sound one. Damage too deep for the check
 * to go on (the file is not a database, a page it cannot read) is told as that one problem, in SQLite's words.
 * `signal` ends the worker and rejects with its reason.
 */
export function datastoreFileProblems(file: string, signal?: AbortSignal): Promise<string[]> {
  signal?.throwIfAborted();
  return new Promise((resolve, reject) => {
    const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { module: sqliteModule(), file, limit: PROBLEMS_NAMED } });
    let answer: { rows?: string[]; error?: string } | undefined;
    let settled = false;
    const settle = (fn: () => void): void => {
      if (settled) return;
      settled = true;
      signal?.removeEventListener('abort', onAbort);
      fn();
    };
    const onAbort = (): void => {
      settle(() => reject(signal!.reason));
      void worker.terminate();
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    worker.once('message', (m: { rows?: string[]; error?: string }) => (answer = m));
    worker.once('error', (err) => settle(() => reject(err)));
    // Answered at its exit, when the file is closed: the caller removes it and what SQLite made beside it.
    worker.once('exit', (code) =>
      settle(() => {
        if (answer === undefined) reject(new Error(`the integrity check's worker exited (code ${code}) without an answer`));
        else resolve(answer.rows !== undefined ? integrityCheckProblems(answer.rows, PROBLEMS_NAMED) : [answer.error ?? 'the check failed']);
      }),
    );
  });
}
