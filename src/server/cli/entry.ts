import { invalidArgument, isMeshidError } from '../../common/errors.js';
import { GRPC_CODE } from '../../common/grpc-status.js';
import { runGroup, type Command } from '../../common/cli/command.js';
import { errorLine, EXIT_FAILURE, OUTPUT_FLAG, outputFormat, renderJson, type CliIo } from '../../common/cli/output.js';
import { MAX_ENTRY_BATCH, serverId } from '../api/entry-validation.js';
import { ADMIN_SOCKET_FLAG, batchStatusError, withAdminClient, type AdminClient } from './admin-client.js';
import type { ListEntriesRequest, ProtoEntry } from './admin-types.js';
import { compareEntries, renderEntry, renderEntryList } from './entry-output.js';
import { spireEntry, spireStatus } from './spire-output.js';
import { parseEntryIdFile } from './entry-file.js';
import { readAll, readTextFile } from '../../common/cli/input.js';
import { noteNoCommonName, noteRecordedOnly, noteUnmatchableSelectors } from './entry-notes.js';
import { entryFields, FIELD_FLAGS, FILTER_FLAGS, listRequest, MASK_OF_FLAG, UPDATE_FIELD_FLAGS } from './entry-flags.js';
import { createFromFile, ENTRY_REFUSALS, updateFromFile } from './entry-batches.js';
import { entryIdFlag, parentIdFlag, selectorFlag, spiffeIdFlag } from './flags.js';

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
      noteNoCommonName(io, [result!.entry ?? entry]);
      return 0;
    });
  },
};

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
    ...UPDATE_FIELD_FLAGS,
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
    if (mask.includes('dns_names')) noteNoCommonName(io, [updated]);
    return 0;
  },
};

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
    const results: Array<{ id: string; status: { code: number; message: string } }> = [];
    let stopped: { err: unknown; inFlight: number } | undefined;
    await withAdminClient(args, io.env, async (client) => {
      // The server takes at most MAX_ENTRY_BATCH IDs per call; a spire-server delete file may name more.
      for (let i = 0; i < ids.length; i += MAX_ENTRY_BATCH) {
        const batch = ids.slice(i, i + MAX_ENTRY_BATCH);
        let res;
        try {
          res = await client.call('Entries', 'DeleteEntries', { ids: batch });
        } catch (err) {
          // Failing part-way: what the earlier calls deleted is reported below, then the error.
          if (i === 0) throw err;
          stopped = { err, inFlight: batch.length };
          return;
        }
        results.push(...(res.results ?? []).map((r) => ({ id: r.id ?? '', status: { code: r.status?.code ?? 0, message: r.status?.message ?? '' } })));
      }
    });
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
    if (stopped !== undefined) {
      const unsent = ids.length - results.length - stopped.inFlight;
      io.stderr.write(
        `Stopped after ${results.length} of ${ids.length} entry IDs: the next ${stopped.inFlight} got no answer (the server deletes such a call's entries all or none)` +
          `${unsent > 0 ? `, and the ${unsent} after them were not sent` : ''}; run the command again: what is gone is refused NotFound\n`,
      );
      throw stopped.err;
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
