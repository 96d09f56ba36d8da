import { invalidArgument, isMeshidError, type ErrorCode } from '../../common/errors.js';
import { GRPC_CODE } from '../../common/grpc-status.js';
import type { ParsedArgs } from '../../common/cli/args.js';
import { runGroup, type Command } from '../../common/cli/command.js';
import { errorLine, EXIT_FAILURE, OUTPUT_FLAG, outputFormat, renderJson, type CliIo } from '../../common/cli/output.js';
import { serverId } from '../api/entry-validation.js';
import { ADMIN_SOCKET_FLAG, batchStatusError, withAdminClient, type AdminClient } from './admin-client.js';
import type { ListEntriesRequest, ProtoEntry } from './admin-types.js';
import { compareEntries, renderEntry, renderEntryList } from './entry-output.js';
import { spireEntry, spireStatus } from './spire-output.js';
import { adoptSpireParents, parseEntryFile, parseEntryIdFile } from './entry-file.js';
import { readAll, readTextFile } from '../../common/cli/input.js';
import { noteRecordedOnly, noteUnmatchableSelectors } from './entry-notes.js';
import { entryFields, FIELD_FLAGS, FILTER_FLAGS, listRequest, MASK_OF_FLAG } from './entry-flags.js';
import { entryIdFlag, parentIdFlag, selectorFlag, spiffeIdFlag } from './flags.js';

/**
 * Refusals of the entry itself, which `--output json` reports as the entry's result; anything else (the server
 * unreachable, its datastore unavailable) is about the call, and is only the error line.
 */
const ENTRY_REFUSALS: ReadonlySet<ErrorCode> = new Set(['invalid_argument', 'not_found', 'already_exists', 'failed_precondition']);

async function trustDomainOf(client: AdminClient): Promise<string> {
  const res = await client.call('Authorities', 'ListAuthorities', {});
  if (!res.trust_domain) throw invalidArgument('the server did not report its trust domain');
  return res.trust_domain;
}

/** spire-server entry create/update flags with no meshid counterpart, answered with what meshid does instead. */
const SPIRE_ENTRY_FLAGS_NOT_SUPPORTED: Readonly<Record<string, string>> = {
  entryExpiry: 'meshid entries do not expire: delete the entry when it is no longer needed (`entry delete --entry-id`)',
  storeSVID: 'meshid has no SVIDStore plugins: the agent serves the SVID to the workloads the entry matches',
  jwtSVIDIncludeJTI: "meshid's JWT-SVIDs carry no jti, and the agent reuses a workload's unexpired JWT-SVID for the same audience",
  disableX509SVIDPrefetch: 'the agent signs an X509-SVID for every entry it may serve as soon as it learns of it',
};

const create: Command = {
  name: 'create',
  summary: 'Creates a registration entry and prints it with its ID.',
  flags: [
    spiffeIdFlag('SPIFFE ID the entry issues; required'),
    parentIdFlag('SPIFFE ID of the agent (or node alias) that may serve the entry; required unless --node'),
    selectorFlag('Selector the workload must match, e.g. unix:uid:1000; at least one'),
    { name: 'node', type: 'bool', description: 'Create a node-alias entry: its parent is the server, its selectors match agents' },
    entryIdFlag('An ID of your choosing for the entry (default: one is generated)'),
    ...FIELD_FLAGS,
    {
      name: 'data',
      type: 'string',
      valueName: 'FILE',
      description: 'Create every entry of a JSON file in spire-server entry create -data format ("-": standard input), instead of the flags',
    },
    ADMIN_SOCKET_FLAG,
    OUTPUT_FLAG,
  ],
  notSupported: SPIRE_ENTRY_FLAGS_NOT_SUPPORTED,
  async run(args, io) {
    const file = args.string('data');
    if (file !== undefined) return createFromFile(args, io, file);
    const entry = entryFields(args);
    if (entry.spiffe_id === undefined) throw invalidArgument('flag --spiffe-id is required');
    noteRecordedOnly(io, [entry]);
    const node = args.bool('node') === true;
    if (node && entry.parent_id !== undefined) throw invalidArgument('--node and --parent-id exclude each other: a node alias is parented by the server');
    if (!node && entry.parent_id === undefined) throw invalidArgument('flag --parent-id is required (or --node for a node-alias entry)');
    // As spire-server refuses it ("node entries can not federate"): a node alias issues no SVID to carry the bundles.
    if (node && (entry.federates_with ?? []).length > 0) {
      throw invalidArgument('--federates-with does not go with --node: a node alias issues no SVID, so no workload would get the federated bundles; give it to the workload entries parented to the alias');
    }
    if ((entry.selectors ?? []).length === 0) throw invalidArgument('at least one selector is required (e.g. --selector unix:uid:1000)');
    const id = args.string('entry-id');
    if (id !== undefined) entry.id = id;
    return withAdminClient(args, io.env, async (client) => {
      if (node) // A node alias is parented by the server's own ID (spiffe://<td>/meshid/server).
      entry.parent_id = serverId(await trustDomainOf(client));
      const res = await client.call('Entries', 'CreateEntries', { entries: [entry] });
      const result = res.results?.[0];
      const failure = result === undefined ? invalidArgument('the server returned no result') : batchStatusError(result.status);
      if (outputFormat(args) === 'json') {
        // spire-server's BatchCreateEntryResponse; a refused entry is shown as sent, as spire-server fills it in.
        io.stdout.write(renderJson({ results: (res.results ?? []).map((r) => ({ status: spireStatus(r.status?.code, r.status?.message), entry: spireEntry(r.entry ?? entry) })) }));
      }
      if (failure !== undefined) throw failure;
      if (outputFormat(args) === 'pretty') io.stdout.write(renderEntry(result!.entry ?? {}));
      noteUnmatchableSelectors(io, [result!.entry ?? entry]);
      return 0;
    });
  },
};

/**
 * `entry create --data`: one CreateEntries batch per 10,000 entries (or 3 MiB of them), each created all or none.
 * Prints what was created and what was refused and why, as spire-server does; exit 1 when anything was refused.
 */
async function createFromFile(args: ParsedArgs, io: CliIo, file: string): Promise<number> {
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

const show: Command = {
  name: 'show',
  summary: 'Shows registration entries: one by --entry-id, or all that match the filters.',
  flags: [entryIdFlag('ID of the entry to show'), ...FILTER_FLAGS, ADMIN_SOCKET_FLAG, OUTPUT_FLAG],
  async run(args, io) {
    const id = args.string('entry-id');
    const filters = args.given.filter((f) => !['entry-id', 'admin-socket', 'output'].includes(f));
    if (id !== undefined && filters.length > 0) throw invalidArgument(`--entry-id cannot be combined with --${filters[0]}`);
    const request = listRequest(args);
    const entries = await withAdminClient(args, io.env, async (client) => {
      if (id !== undefined) return [await client.call('Entries', 'GetEntry', { id })];
      return (await listAll(client, request)).sort(compareEntries);
    });
    // spire-server's ListEntriesResponse, every page in one, as spire-server prints it.
    io.stdout.write(outputFormat(args) === 'json' ? renderJson({ entries: entries.map(spireEntry), next_page_token: '' }) : renderEntryList(entries));
    return 0;
  },
};

/** `entry count`: how many entries `entry show` with the same filters lists, as spire-server prints it. */
const count: Command = {
  name: 'count',
  summary: 'Counts the registration entries that match the filters.',
  flags: [...FILTER_FLAGS, ADMIN_SOCKET_FLAG, OUTPUT_FLAG],
  async run(args, io) {
    const request = listRequest(args);
    const n = (await withAdminClient(args, io.env, (client) => listAll(client, request))).length;
    io.stdout.write(outputFormat(args) === 'json' ? renderJson({ count: n }) : `${n} registration ${n === 1 ? 'entry' : 'entries'}\n`);
    return 0;
  },
};

/** Follows next_page_token until the server has returned every matching entry. */
export async function listAll(client: AdminClient, request: ListEntriesRequest): Promise<ProtoEntry[]> {
  const entries: ProtoEntry[] = [];
  let pageToken = '';
  do {
    const page = await client.call('Entries', 'ListEntries', { ...request, page_size: 500, page_token: pageToken });
    entries.push(...(page.entries ?? []));
    pageToken = page.next_page_token ?? '';
  } while (pageToken !== '');
  return entries;
}

const update: Command = {
  name: 'update',
  summary: 'Changes the given fields of an entry; fields whose flags are absent stay as they are (--data: replaces entries whole).',
  flags: [
    entryIdFlag('ID of the entry to update; required unless --data'),
    spiffeIdFlag('New SPIFFE ID'),
    parentIdFlag('New parent ID'),
    selectorFlag('New selectors (replace all current ones)'),
    ...FIELD_FLAGS,
    {
      name: 'data',
      type: 'string',
      valueName: 'FILE',
      description: 'Replace every entry of a JSON file in spire-server entry update -data format, each named by its entry_id, whole: fields the file leaves out are reset ("-": standard input)',
    },
    ADMIN_SOCKET_FLAG,
    OUTPUT_FLAG,
  ],
  notSupported: SPIRE_ENTRY_FLAGS_NOT_SUPPORTED,
  async run(args, io) {
    const file = args.string('data');
    if (file !== undefined) return updateFromFile(args, io, file);
    const id = args.requiredString('entry-id');
    const entry = { ...entryFields(args), id };
    noteRecordedOnly(io, [entry]);
    const mask = args.given.filter((f) => f in MASK_OF_FLAG).map((f) => MASK_OF_FLAG[f]!);
    if (mask.length === 0) {
      throw invalidArgument(`nothing to update: give at least one of ${Object.keys(MASK_OF_FLAG).map((f) => `--${f}`).join(', ')}`);
    }
    const json = outputFormat(args) === 'json';
    let updated: ProtoEntry;
    try {
      updated = await withAdminClient(args, io.env, (client) => client.call('Entries', 'UpdateEntry', { entry, mask }));
    } catch (err) {
      // spire-server's BatchUpdateEntryResponse: a script reads every outcome as a result with its status, whether
      // the entry was changed or refused (then with the entry as sent, as spire-server fills it in).
      if (json && isMeshidError(err) && ENTRY_REFUSALS.has(err.code)) {
        io.stdout.write(renderJson({ results: [{ status: spireStatus(GRPC_CODE[err.code], err.message), entry: spireEntry(entry) }] }));
      }
      throw err;
    }
    io.stdout.write(json ? renderJson({ results: [{ status: spireStatus(0, ''), entry: spireEntry(updated) }] }) : renderEntry(updated));
    if (mask.includes('selectors') || mask.includes('parent_id')) noteUnmatchableSelectors(io, [updated]);
    return 0;
  },
};

/** Every field UpdateEntry takes: `entry update --data` replaces an entry whole, as spire-server's does. */
const WHOLE_ENTRY_MASK: readonly string[] = Object.values(MASK_OF_FLAG);

/**
 * `entry update --data`: each entry of the file replaces the entry its entry_id names, one UpdateEntry call each.
 * Prints what was updated and what was refused and why, as `entry create --data` does; exit 1 when anything was.
 */
async function updateFromFile(args: ParsedArgs, io: CliIo, file: string): Promise<number> {
  const entries = await readEntryFile(args, io, file, 'update');
  const unnamed = entries.findIndex((e) => !e.id);
  if (unnamed !== -1) throw invalidArgument(`${file}: entry ${unnamed + 1} has no entry_id: each entry to update is named by its entry_id`);
  const results: Array<{ status: { code: number; message: string }; entry: ProtoEntry }> = [];
  await withAdminClient(args, io.env, async (client) => {
    for (const sent of entries) {
      try {
        results.push({ status: { code: 0, message: '' }, entry: await client.call('Entries', 'UpdateEntry', { entry: sent, mask: [...WHOLE_ENTRY_MASK] }) });
      } catch (err) {
        // A refusal of this entry is its result; the server unreachable ends the command.
        if (!isMeshidError(err) || !ENTRY_REFUSALS.has(err.code)) throw err;
        results.push({ status: { code: GRPC_CODE[err.code], message: err.message }, entry: sent });
      }
    }
  });
  const updated = results.filter((r) => r.status.code === 0);
  noteUnmatchableSelectors(io, updated.map((r) => r.entry));
  if (outputFormat(args) === 'json') {
    io.stdout.write(renderJson({ results: results.map((r) => ({ status: spireStatus(r.status.code, r.status.message), entry: spireEntry(r.entry) })) }));
  } else {
    if (updated.length > 0) io.stdout.write(`Updated ${updated.length} of ${results.length} entries:\n\n${updated.map((r) => renderEntry(r.entry)).join('\n')}`);
    for (const r of results) {
      if (r.status.code !== 0) io.stderr.write(`Failed to update ${r.entry.id}: ${errorLine(batchStatusError(r.status)).slice('Error: '.length)}\n`);
    }
  }
  return updated.length === results.length ? 0 : 1;
}

const remove: Command = {
  name: 'delete',
  summary: 'Deletes entries by ID.',
  flags: [
    entryIdFlag('ID of an entry to delete; required unless --file', true),
    {
      name: 'file',
      type: 'string',
      valueName: 'FILE',
      description: 'Delete the entries a JSON file names, {"ids": [...]} as spire-server entry delete -file reads ("-": standard input)',
    },
    ADMIN_SOCKET_FLAG,
    OUTPUT_FLAG,
  ],
  async run(args, io) {
    const file = args.string('file');
    if (file !== undefined && args.has('entry-id')) throw invalidArgument('--file and --entry-id exclude each other: give the IDs in one or the other');
    const ids = file === undefined ? args.strings('entry-id') : await entryIdsOf(file, io);
    if (ids.length === 0) throw invalidArgument(file === undefined ? 'flag --entry-id is required (or --file)' : `${file} names no entry IDs`);
    const res = await withAdminClient(args, io.env, (client) => client.call('Entries', 'DeleteEntries', { ids }));
    const results = (res.results ?? []).map((r) => ({ id: r.id ?? '', status: { code: r.status?.code ?? 0, message: r.status?.message ?? '' } }));
    // spire-server's BatchDeleteEntryResponse: status first, then the ID.
    if (outputFormat(args) === 'json') io.stdout.write(renderJson({ results: results.map((r) => ({ status: spireStatus(r.status.code, r.status.message), id: r.id })) }));
    // Every refused ID gets its own line: an operator deleting several must learn about each one that is left.
    let failed = 0;
    for (const r of results) {
      const err = batchStatusError(r.status);
      if (err === undefined) {
        if (outputFormat(args) === 'pretty') io.stdout.write(`Deleted entry with ID: ${r.id}\n`);
        continue;
      }
      failed++;
      io.stderr.write(errorLine(err) + '\n');
    }
    return failed === 0 ? 0 : EXIT_FAILURE;
  },
};

/** The IDs of an `entry delete --file` file, or of standard input for "-". */
async function entryIdsOf(file: string, io: CliIo): Promise<string[]> {
  const text = file === '-'
    ? await readAll(io, '--file - reads the entry IDs from standard input, and there is none', 'the entry IDs (JSON, as spire-server entry delete -file takes)')
    : readTextFile(file, 'entry ID file');
  return parseEntryIdFile(text, file === '-' ? 'standard input' : file);
}

export const ENTRY_COMMANDS: readonly Command[] = [create, show, count, update, remove];

/** `meshid-server entry create|show|count|update|delete`: registration entries (admin API meshid.admin.v1.Entries). */
export async function entryCommand(argv: string[], io: CliIo): Promise<number> {
  return runGroup('meshid-server entry', 'Manage registration entries.', ENTRY_COMMANDS, argv, io);
}
