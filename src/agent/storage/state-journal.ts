import fs from 'node:fs';
import { crc32 } from 'node:zlib';
import type { EntryMessage } from '../../common/entry-message.js';
import type { RawState } from './stored-state.js';
import type { SvidDocument } from './state-documents.js';

/**
 * The journal that continues a state snapshot: one line per saved change set, appended and fsynced, so a state change
 * costs the bytes that changed (a renewed SVID: ~2 KB) instead of a rewrite of every SVID and key (~20 MB at 10,000).
 *
 * Line format: `<crc32 of the JSON, 8 hex digits> <JSON JournalBatch>\n` (JSON never holds a raw newline). A batch is
 * the unit of atomicity: replay applies whole batches in order and stops at the first line that is incomplete or
 * fails its checksum — a kill -9 during an append leaves exactly such a torn last line (cut short: without its
 * newline), and what comes before it is a state the agent did save. Replay is then cut there (truncate), so later
 * appends follow valid lines. A line that fails its checksum anywhere else, or whole, is damage (JournalContents).
 */
export interface JournalBatch {
  revision?: number;
  /** The own bundle's SPIFFE bundle document, when it changed. */
  bundle?: unknown;
  /** The complete set of federated bundle documents, when it changed. */
  federated_bundles?: Record<string, unknown>;
  /** Entries added or changed (their full new form). */
  entries?: EntryMessage[];
  removed_entries?: string[];
  /** SVIDs issued since (full records with key). */
  svids?: SvidDocument[];
  /** Entry IDs whose SVID is gone. */
  removed_svids?: string[];
}

const NEWLINE = 0x0a;

/** The journal line for a batch. */
export function encodeJournalBatch(batch: JournalBatch): string {
  const json = JSON.stringify(batch);
  return `${crc32(json).toString(16).padStart(8, '0')} ${json}\n`;
}

/** What a journal holds: its valid batches, the bytes they span, and what follows them (the caller truncates it). */
export interface JournalContents {
  batches: JournalBatch[];
  validBytes: number;
  totalBytes: number;
  /**
   * Set when what follows the valid batches is not a torn last batch, which is all a stop while saving can leave (an
   * append is one line written front to back, its newline last, and the JSON holds no raw newline): it is damage (a
   * disk fault, an edit), either before the end (more than one line follows; `lastLine` false) or of a last line that
   * is complete, newline and all, yet fails its checksum (`lastLine` true). `laterBatches` counts the lines after the
   * damaged one that still pass their checksum: batches the agent did save, lost because replay cannot skip one
   * without serving a state that never was.
   */
  damage?: { laterBatches: number; lastLine: boolean };
}

/** The contents of a journal (JournalContents). A journal that does not exist is empty. */
export function readJournal(file: string): JournalContents {
  let buf: Buffer;
  try {
    buf = fs.readFileSync(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { batches: [], validBytes: 0, totalBytes: 0 };
    throw err;
  }
  const batches: JournalBatch[] = [];
  let pos = 0;
  for (;;) {
    const end = buf.indexOf(NEWLINE, pos);
    if (end === -1) break;
    const batch = decodeLine(buf.subarray(pos, end));
    if (batch === undefined) break;
    batches.push(batch);
    pos = end + 1;
  }
  const badEnd = buf.indexOf(NEWLINE, pos);
  if (badEnd === -1) return { batches, validBytes: pos, totalBytes: buf.length };
  // Saved whole, then changed: the batch it held may be a withdrawal, which dropping it as torn would undo.
  if (badEnd === buf.length - 1) return { batches, validBytes: pos, totalBytes: buf.length, damage: { laterBatches: 0, lastLine: true } };
  let laterBatches = 0;
  for (let from = badEnd + 1; ; ) {
    const end = buf.indexOf(NEWLINE, from);
    if (end === -1) break;
    if (decodeLine(buf.subarray(from, end)) !== undefined) laterBatches++;
    from = end + 1;
  }
  return { batches, validBytes: pos, totalBytes: buf.length, damage: { laterBatches, lastLine: false } };
}

function decodeLine(line: Buffer): JournalBatch | undefined {
  if (line.length < 10 || line[8] !== 0x20) return undefined;
  const json = line.subarray(9);
  if (line.toString('latin1', 0, 8) !== crc32(json).toString(16).padStart(8, '0')) return undefined;
  try {
    const batch: unknown = JSON.parse(json.toString('utf8'));
    return batch !== null && typeof batch === 'object' && !Array.isArray(batch) ? (batch as JournalBatch) : undefined;
  } catch {
    return undefined;
  }
}

/** Applies one batch to the raw state, in the order the agent made the changes: removals, then additions. */
export function applyJournalBatch(raw: RawState, batch: JournalBatch): void {
  if (typeof batch.revision === 'number') raw.revision = batch.revision;
  if (batch.bundle !== undefined) raw.bundle = batch.bundle;
  if (batch.federated_bundles !== undefined) raw.federatedBundles = batch.federated_bundles;
  for (const id of batch.removed_entries ?? []) raw.entries.delete(id);
  for (const e of batch.entries ?? []) raw.entries.set(String(e?.id ?? ''), e);
  for (const id of batch.removed_svids ?? []) raw.svids.delete(id);
  for (const v of batch.svids ?? []) raw.svids.set(String(v?.entry_id ?? ''), v);
}

/** The journal file of a generation: `state.<n>.journal` next to state.json. */
export function journalFileName(generation: number): string {
  return `state.${generation}.journal`;
}

/** The generation a file name is the journal of, or undefined when it is not a journal. */
export function journalGeneration(name: string): number | undefined {
  const m = /^state\.(\d+)\.journal$/.exec(name);
  return m === null ? undefined : Number(m[1]);
}
