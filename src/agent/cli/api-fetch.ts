import { performance } from 'node:perf_hooks';
import { invalidArgument } from '../../common/errors.js';
import { HELP_WORDS, runCommand, runGroup, type Command } from '../../common/cli/command.js';
import { OUTPUT_FLAG, outputFormat, renderJson, type CliIo } from '../../common/cli/output.js';
import { certificatesToPem, splitConcatenatedDer } from '../../common/x509/pem.js';
import { SOCKET_PATH_FLAG, TIMEOUT_FLAG, withWorkloadClient } from './flags.js';
import { describeX509SvidResponse, writeX509SvidFiles, x509SvidResponseJson } from './svid-output.js';

const fetchX509: Command = {
  name: 'x509',
  summary: "Fetches the caller's X509-SVIDs and bundles from the Workload API (FetchX509SVID, first message); the default of api fetch.",
  flags: [
    SOCKET_PATH_FLAG,
    TIMEOUT_FLAG,
    OUTPUT_FLAG,
    { name: 'write', type: 'string', valueName: 'DIR', description: 'Write svid.N.pem, svid.N.key (0600), bundle.N.pem and federated_bundle.N.M.pem to DIR' },
    { name: 'silent', type: 'bool', description: 'Print no description of the SVIDs (pretty output; with --write, only the files written)' },
  ],
  async run(args, io) {
    const started = performance.now();
    const res = await withWorkloadClient(args, io.env, (client) => client.fetchX509Svid());
    const elapsed = performance.now() - started;
    const dir = args.string('write');
    const written = dir === undefined ? [] : writeX509SvidFiles(dir, res);
    if (outputFormat(args) === 'json') {
      io.stdout.write(renderJson(x509SvidResponseJson(res)));
      return 0;
    }
    const n = res.svids.length;
    const description = args.bool('silent') === true ? [] : [`Received ${n} svid${n === 1 ? '' : 's'} after ${elapsed.toFixed(3)}ms\n\n${describeX509SvidResponse(res)}`];
    const sections = [...description, ...(written.length > 0 ? [written.map((line) => line + '\n').join('')] : [])];
    io.stdout.write(sections.join('\n'));
    return 0;
  },
};

/** `--audience a --audience b` or spire-agent's `-audience a,b`. */
function audiences(values: readonly string[]): string[] {
  const list = values.flatMap((v) => v.split(',')).map((a) => a.trim()).filter((a) => a !== '');
  if (list.length === 0) throw invalidArgument('flag --audience is required (the audience the token is for)');
  return list;
}

const fetchJwt: Command = {
  name: 'jwt',
  summary: 'Fetches JWT-SVIDs for the given audience (FetchJWTSVID) and the JWT bundles (FetchJWTBundles), and prints both as spire-agent does.',
  flags: [
    { name: 'audience', type: 'strings', valueName: 'AUD', description: 'Audience of the token, comma-separated or repeated; required' },
    { name: 'spiffe-id', aliases: ['spiffeID'], type: 'string', valueName: 'ID', description: 'Only this identity (default: every identity of the caller)' },
    SOCKET_PATH_FLAG,
    TIMEOUT_FLAG,
    OUTPUT_FLAG,
  ],
  async run(args, io) {
    const audience = audiences(args.strings('audience'));
    // Bundles first, then tokens, in two calls, as spire-agent does: scripts written for it read both from one run.
    const [bundles, res] = await withWorkloadClient(args, io.env, async (client) => [
      await client.fetchJwtBundles(),
      await client.fetchJwtSvid(audience, args.string('spiffe-id')),
    ] as const);
    const svids = res.svids.map((s) => ({ spiffe_id: s.spiffe_id, svid: s.svid, hint: s.hint ?? '' }));
    const jwks = Object.entries(bundles.bundles).sort(([a], [b]) => (a < b ? -1 : 1));
    if (outputFormat(args) === 'json') {
      // spire-agent's -output json: both responses in one array, unset fields included (protojson EmitUnpopulated).
      io.stdout.write(renderJson([{ svids }, { bundles: Object.fromEntries(jwks) }]));
      return 0;
    }
    for (const svid of svids) {
      io.stdout.write(`token(${svid.spiffe_id}):\n\t${svid.svid}\n`);
      if (svid.hint !== '') io.stdout.write(`hint(${svid.spiffe_id}):\n\t${svid.hint}\n`);
    }
    for (const [td, doc] of jwks) io.stdout.write(`bundle(${td}):\n\t${Buffer.from(doc).toString('utf8')}\n`);
    return 0;
  },
};

const fetchBundle: Command = {
  name: 'bundle',
  summary: 'Prints the X.509 bundles of the own and federated trust domains as PEM (FetchX509Bundles).',
  flags: [SOCKET_PATH_FLAG, TIMEOUT_FLAG, OUTPUT_FLAG],
  async run(args, io) {
    const res = await withWorkloadClient(args, io.env, (client) => client.fetchX509Bundles());
    const entries = Object.entries(res.bundles).sort(([a], [b]) => (a < b ? -1 : 1));
    const pem = entries.map(([td, der]) => [td, certificatesToPem(splitConcatenatedDer(der))] as const);
    if (outputFormat(args) === 'json') {
      io.stdout.write(renderJson({ bundles: Object.fromEntries(pem) }));
      return 0;
    }
    // "# spiffe://td" lines are RFC 7468 explanatory text: the output stays a valid PEM bundle file.
    io.stdout.write(pem.map(([td, text]) => `# ${td}\n${text}`).join('\n'));
    return 0;
  },
};

/**
 * `meshid-agent api fetch x509|jwt|bundle`. Bare `api fetch` (nothing, or flags, after it) is `fetch x509`, as
 * spire-agent has it, so scripts and probes written for spire-agent (`api fetch -socketPath …`) run unchanged.
 */
export async function apiFetchCommand(argv: readonly string[], io: CliIo): Promise<number> {
  const first = argv[0];
  if (first === undefined || (first.startsWith('-') && !HELP_WORDS.has(first))) return runCommand('meshid-agent api fetch', fetchX509, argv, io);
  return runGroup('meshid-agent api fetch', 'Fetch identities and bundles from the Workload API.', [fetchX509, fetchJwt, fetchBundle], argv, io);
}
