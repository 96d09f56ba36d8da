import { invalidArgument, isMeshidError, type ErrorCode } from '../../common/errors.js';
import { GRPC_CODE } from '../../common/grpc-status.js';
import type { ParsedArgs } from '../../common/cli/args.js';
import { errorLine, outputFormat, renderJson, type CliIo } from '../../common/cli/output.js';
import { readAll, readTextFile } from '../../common/cli/input.js';
import { batchStatusError, withAdminClient } from './admin-client.js';
import type { ProtoEntry } from './admin-types.js';
import { renderEntry } from './entry-output.js';
import { spireEntry, spireStatus } from './spire-output.js';
import { adoptSpireParents, parseEntryFile } from './entry-file.js';
import { noteNoCommonName, noteRecordedOnly, noteUnmatchableSelectors } from './entry-notes.js';
import { MASK_OF_FLAG } from './entry-flags.js';

/**
 * `entry create --data` and `entry update --data`: the entries of a file in spire-server's -data format sent in
 * batches, each entry's refusal reported as its result (ENTRY_REFUSALS), and a server lost part-way reported as how far
 * the file got.
 */

/**
 * Refusals of the entry itself, which `--output json` reports as the entry's result; anything else (the server
 * unreachable, its datastore unavailable) is about the call, and is only the error line.
 */
export const ENTRY_REFUSALS: ReadonlySet<ErrorCode> = new Set(['invalid_argument', 'not_found', 'already_exists', 'failed_precondition']);

/**
 * `entry create --data`: one CreateEntries batch per 10,000 entries (or 3 MiB of them), each created all or none.
 * Prints what was created and what was refused and why, as spire-server does; exit 1 when anything was refused.
 */
export async function createFromFile(args: ParsedArgs, io: CliIo, file: string): Promise<number> {
  const entries = await readEntryFile(args, io, file, 'create');
  const results: Array<{ status: { code: number; message: string }; entry: ProtoEntry }> = [];
  let stopped: { err: unknown; inFlight: number } | undefined;
  await withAdminClient(args, io.env, async (client) => {
    for (const batch of fileBatches(entries)) {
      let res;
      try {
        res = await client.call('Entries', 'CreateEntries', { entries: batch });
      } catch (err) {
        // The server gone or failing part-way: what the earlier batches created is reported below, then the error.
        stopped = { err, inFlight: batch.length };
        return;
      }
      batch.forEach((sent, j) => {
        const r = res.results?.[j];
        results.push({ status: { code: r?.status?.code ?? 0, message: r?.status?.message ?? '' }, entry: r?.entry ?? sent });
      });
    }
  });
  const failed = results.filter((r) => r.status.code !== 0);
  noteUnmatchableSelectors(io, results.filter((r) => r.status.code === 0).map((r) => r.entry));
  noteNoCommonName(io, results.filter((r) => r.status.code === 0).map((r) => r.entry));
  if (outputFormat(args) === 'json') {
    io.stdout.write(renderJson({ results: results.map((r) => ({ status: spireStatus(r.status.code, r.status.message), entry: spireEntry(r.entry) })) }));
  } else {
    const created = results.filter((r) => r.status.code === 0);
    if (created.length > 0) io.stdout.write(`Created ${created.length} of ${entries.length} entries:\n\n${created.map((r) => renderEntry(r.entry)).join('\n')}`);
    for (const r of failed) {
      io.stderr.write(`Failed to create ${r.entry.spiffe_id ?? '(no SPIFFE ID)'} (parent ${r.entry.parent_id ?? 'none'}): ${errorLine(batchStatusError(r.status)).slice('Error: '.length)}\n`);
    }
  }
  if (stopped !== undefined) {
    const answered = results.length;
    const unsent = entries.length - answered - stopped.inFlight;
    io.stderr.write(
      `Stopped after ${answered} of ${entries.length} entries of the file (${answered - failed.length} created): ${range(answered + 1, answered + stopped.inFlight)} ` +
        `got no answer (the server creates such a batch all or none)${unsent > 0 ? `, and the ${unsent} after them were not sent` : ''}; ` +
        'run the file again: what exists is refused AlreadyExists and the rest is created\n',
    );
    throw stopped.err;
  }
  return failed.length === 0 ? 0 : 1;
}

/** Entries `from` to `to` of a file, counted from 1, as an operator reads them. */
const range = (from: number, to: number): string => (from === to ? `entry ${from}` : `entries ${from}-${to}`);

/**
 * The entries of a `--data` file (spire-server's -data format; "-": standard input) to create or update:
 * alone on the command line, at least one, SPIRE's parents adopted, and what meshid takes differently noted.
 */
async function readEntryFile(args: ParsedArgs, io: CliIo, file: string, verb: 'create' | 'update'): Promise<ProtoEntry[]> {
  const other = args.given.find((f) => !['data', 'admin-socket', 'output'].includes(f));
  if (other !== undefined) throw invalidArgument(`--data ${verb}s the entries of its file: it cannot be combined with --${other}`);
  const text = file === '-' ? await readAll(io, '--data - reads the entries from standard input, and there is none', 'the entries (JSON, as spire-server entry create -data takes)') : readTextFile(file, 'entry file');
  const source = file === '-' ? 'standard input' : file;
  const entries = parseEntryFile(text, source);
  if (entries.length === 0) throw invalidArgument(`${source} holds no entries: give at least one in its "entries" array`);
  const spire = adoptSpireParents(entries);
  if (spire.nodeAliases > 0) {
    io.stderr.write(`Note: ${spire.nodeAliases} entr${spire.nodeAliases === 1 ? 'y' : 'ies'} parented to SPIRE's server ID (spiffe://<td>/spire/server) ${spire.nodeAliases === 1 ? 'is a node alias' : 'are node aliases'}: ${verb}d with meshid's (spiffe://<td>/meshid/server)\n`);
  }
  if (spire.underSpireAgents > 0) {
    io.stderr.write(
      `Note: ${spire.underSpireAgents} entr${spire.underSpireAgents === 1 ? 'y is' : 'ies are'} parented to SPIRE agent IDs (spiffe://<td>/spire/agent/...), which no meshid agent has: ` +
        'they match no workload until re-parented to a meshid agent or node alias (entry update --entry-id <entry> --parent-id <ID>)\n',
    );
  }
  noteRecordedOnly(io, entries);
  return entries;
}

/** The admin API's CreateEntries limit. */
const FILE_BATCH = 10_000;

/**
 * Bytes of entries (as JSON) per CreateEntries call: the server takes requests of up to grpc-js's default 4 MiB, and
 * an entry's JSON is never shorter than its protobuf encoding, so a batch within this is taken whatever its entries
 * hold. 10,000 entries of ~420 bytes (SPIRE exports with Kubernetes selectors) were refused whole before.
 */
const FILE_BATCH_BYTES = 3 * 1024 * 1024;

/** The file's entries in order, in batches of at most FILE_BATCH entries and FILE_BATCH_BYTES (one entry at least). */
function fileBatches(entries: readonly ProtoEntry[]): ProtoEntry[][] {
  const batches: ProtoEntry[][] = [];
  let batch: ProtoEntry[] = [];
  let bytes = 0;
  for (const e of entries) {
    const size = Buffer.byteLength(JSON.stringify(e));
    if (batch.length > 0 && (batch.length === FILE_BATCH || bytes + size > FILE_BATCH_BYTES)) {
      batches.push(batch);
      batch = [];
      bytes = 0;
    }
    batch.push(e);
    bytes += size;
  }
  if (batch.length > 0) batches.push(batch);
  return batches;
}

/** Every field UpdateEntry takes: `entry update --data` replaces an entry whole, as spire-server's does. */
const WHOLE_ENTRY_MASK: readonly string[] = Object.values(MASK_OF_FLAG);

/**
 * `entry update --data`: each entry of the file replaces the entry its entry_id names, one UpdateEntry call each.
 * Prints what was updated and what was refused and why, as `entry create --data` does; exit 1 when anything was. A
 * server lost or failing part-way ends the command, saying how far the file got: nothing else tells which entries of
 * the file are in their new form.
 */
export async function updateFromFile(args: ParsedArgs, io: CliIo, file: string): Promise<number> {
  const entries = await readEntryFile(args, io, file, 'update');
  const unnamed = entries.findIndex((e) => !e.id);
  if (unnamed !== -1) throw invalidArgument(`${file}: entry ${unnamed + 1} has no entry_id: each entry to update is named by its entry_id`);
  const results: Array<{ status: { code: number; message: string }; entry: ProtoEntry }> = [];
  let stopped: unknown;
  await withAdminClient(args, io.env, async (client) => {
    for (const sent of entries) {
      try {
        results.push({ status: { code: 0, message: '' }, entry: await client.call('Entries', 'UpdateEntry', { entry: sent, mask: [...WHOLE_ENTRY_MASK] }) });
      } catch (err) {
        // A refusal of this entry is its result; the server unreachable or failing ends the command, after what the
        // earlier calls updated is reported below.
        if (!isMeshidError(err) || !ENTRY_REFUSALS.has(err.code)) {
          if (results.length === 0) throw err;
          stopped = err;
          return;
        }
        results.push({ status: { code: GRPC_CODE[err.code], message: err.message }, entry: sent });
      }
    }
  });
  const updated = results.filter((r) => r.status.code === 0);
  noteUnmatchableSelectors(io, updated.map((r) => r.entry));
  noteNoCommonName(io, updated.map((r) => r.entry));
  if (outputFormat(args) === 'json') {
    io.stdout.write(renderJson({ results: results.map((r) => ({ status: spireStatus(r.status.code, r.status.message), entry: spireEntry(r.entry) })) }));
  } else {
    if (updated.length > 0) io.stdout.write(`Updated ${updated.length} of ${entries.length} entries:\n\n${updated.map((r) => renderEntry(r.entry)).join('\n')}`);
    for (const r of results) {
      if (r.status.code !== 0) io.stderr.write(`Failed to update ${r.entry.id}: ${errorLine(batchStatusError(r.status)).slice('Error: '.length)}\n`);
    }
  }
  if (stopped !== undefined) {
    const answered = results.length;
    const unsent = entries.length - answered - 1;
    io.stderr.write(
      `Stopped after ${answered} of ${entries.length} entries of the file (${updated.length} updated): entry ${answered + 1} (${entries[answered]!.id}) got no answer ` +
        `(the server updates an entry all or none)${unsent > 0 ? `, and the ${unsent} after it ${unsent === 1 ? 'was' : 'were'} not sent` : ''}; ` +
        'run the file again: each entry is replaced whole, so those updated already stay as they are\n',
    );
    throw stopped;
  }
  return updated.length === results.length ? 0 : 1;
}
