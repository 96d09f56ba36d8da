import { createHash, createPublicKey } from 'node:crypto';
import { readAll } from '../../common/cli/input.js';
import { readBundleFile, refuseRepeatedKeys, warnOfAnotherTrustDomain, warnOfLeftOutKeys } from './bundle-file.js';
import { invalidArgument, notFound } from '../../common/errors.js';
import type { FlagSpec, ParsedArgs } from '../../common/cli/args.js';
import { runGroup, type Command } from '../../common/cli/command.js';
import { OUTPUT_FLAG, outputFormat, renderJson, type CliIo } from '../../common/cli/output.js';
import { bundleToSpiffeJson, writableBundle, type TrustBundle } from '../../common/spiffe/bundle.js';
import { certificatesToPem } from '../../common/x509/pem.js';
import { ADMIN_SOCKET_FLAG, withAdminClient, type AdminClient } from './admin-client.js';
import { refusalAsBatchResult, spireBundle, spireStatus } from './spire-output.js';
import type { ProtoBundle } from './admin-types.js';
import { checkTrustDomain, trustDomainFlag } from './flags.js';

const FORMAT_FLAG: FlagSpec = {
  name: 'format', type: 'string', choices: ['pem', 'spiffe'], description: 'pem: the X.509 roots as PEM (default); spiffe: a SPIFFE bundle (JWK set JSON)',
};

/** The proto Bundle as the SPIFFE bundle model (SPIFFE Trust Domain and Bundle §3). */
function protoToTrustBundle(b: ProtoBundle): TrustBundle {
  return {
    trustDomain: b.trust_domain ?? '',
    x509Authorities: b.x509_authorities ?? [],
    jwtAuthorities: (b.jwt_authorities ?? []).map((k) => ({
      kid: k.kid ?? '',
      publicKey: createPublicKey({ key: k.public_key ?? Buffer.alloc(0), format: 'der', type: 'spki' }),
    })),
    sequence: b.sequence ?? 0,
    refreshHintSeconds: b.refresh_hint || undefined,
  };
}

/**
 * A bundle as `bundle show` prints it: PEM CERTIFICATE blocks of the X.509 roots, or the SPIFFE bundle document
 * (Bundle §4: x509-svid keys with one x5c, jwt-svid keys with kid, spiffe_sequence).
 */
function renderBundle(b: ProtoBundle, format: 'pem' | 'spiffe', io: Pick<CliIo, 'stderr'>): string {
  if (format === 'pem') return certificatesToPem(b.x509_authorities ?? []);
  // A root stored before meshid refused keys no bundle JWK carries (DSA, Ed448, EC off the NIST curves) costs that
  // root in the document, said on stderr, not the whole document.
  const writable = writableBundle(protoToTrustBundle(b), (k) => io.stderr.write(`Warning: ${k.problem}, which no SPIFFE bundle JWK of meshid's carries: left out of the document\n`));
  return bundleToSpiffeJson(writable, { indent: 2 }) + '\n';
}

/**
 * Whether a root of the own bundle was tainted (`ca taint`), for spire-server's `tainted` flag: the CA journal names
 * tainted roots by their certificate's SHA-256 fingerprint.
 */
async function taintedRoots(client: AdminClient): Promise<(der: Buffer) => boolean> {
  const journal = await client.call('Authorities', 'ListAuthorities', {});
  const tainted = new Set((journal.authorities ?? []).filter((a) => a.kind === 'root' && a.state === 'tainted').map((a) => a.fingerprint));
  return (der) => tainted.has(createHash('sha256').update(der).digest('hex'));
}

/**
 * The format to print in. With --output json, --format does not apply (SPIRE ignores it too, so scripts written for
 * spire-server pass both): said on stderr rather than dropped silently, since an operator asking for both wants one
 * document and would not know which one came.
 */
function formatOf(args: ParsedArgs, io: CliIo): 'pem' | 'spiffe' {
  const format = args.string('format');
  if (format !== undefined && outputFormat(args) === 'json') {
    io.stderr.write(`Note: --format ${format} does not apply with --output json, which prints the bundle's fields (for the SPIFFE bundle document, drop --output json)\n`);
  }
  return format === 'spiffe' ? 'spiffe' : 'pem';
}

const show: Command = {
  name: 'show',
  summary: "Prints this trust domain's own bundle (its root CAs and JWT keys).",
  flags: [FORMAT_FLAG, ADMIN_SOCKET_FLAG, OUTPUT_FLAG],
  async run(args, io) {
    const format = formatOf(args, io);
    const json = outputFormat(args) === 'json';
    const { b, isTainted } = await withAdminClient(args, io.env, async (client) => ({
      b: await client.call('Bundles', 'GetBundle', {}),
      isTainted: json ? await taintedRoots(client) : undefined,
    }));
    // spire-server prints GetBundle's spire.api.types.Bundle.
    io.stdout.write(json ? renderJson(spireBundle(b, isTainted)) : renderBundle(b, format, io));
    return 0;
  },
};

const list: Command = {
  name: 'list',
  summary: 'Prints the federated bundles (other trust domains this server trusts).',
  flags: [trustDomainFlag('Only the bundle of this trust domain, printed alone as bundle show prints the own one'), FORMAT_FLAG, ADMIN_SOCKET_FLAG, OUTPUT_FLAG],
  async run(args, io) {
    const only = args.string('trust-domain');
    const td = only === undefined ? undefined : checkTrustDomain(only);
    const format = formatOf(args, io);
    const bundles = await withAdminClient(args, io.env, async (client) => {
      const listed = ((await client.call('Bundles', 'ListFederatedBundles', {})).bundles ?? []).filter((b) => td === undefined || b.trust_domain === td);
      // As spire-server's GetFederatedBundle: the own trust domain is a mistake of the request, not a bundle missing.
      if (td !== undefined && listed.length === 0 && (await client.call('Bundles', 'GetBundle', {})).trust_domain === td) {
        throw invalidArgument(`${td} is this server's own trust domain, not a federated one: "meshid-server bundle show" prints its bundle`);
      }
      return listed;
    });
    if (td !== undefined && bundles.length === 0) throw notFound(`no federated bundle for ${td}`);
    if (outputFormat(args) === 'json') {
      // spire-server prints GetFederatedBundle's Bundle for -id, ListFederatedBundlesResponse without.
      io.stdout.write(renderJson(td !== undefined ? spireBundle(bundles[0]!) : { bundles: bundles.map((b) => spireBundle(b)), next_page_token: '' }));
      return 0;
    }
    // One trust domain's bundle alone, as `bundle show` prints the own one (and spire-server's `bundle list -id`):
    // `> partner.json` is then a bundle file that `bundle set` or another server reads back.
    if (td !== undefined) {
      io.stdout.write(renderBundle(bundles[0]!, format, io));
      return 0;
    }
    // `Found N …` first, as entry show, agent list and federation list print (spire-server's list commands too), so an
    // empty list says so instead of printing nothing; then spire-server's banner per trust domain.
    const bar = '*'.repeat(40);
    const head = `Found ${bundles.length} federated ${bundles.length === 1 ? 'bundle' : 'bundles'}\n`;
    io.stdout.write(head + bundles.map((b) => `\n${bar}\n* ${b.trust_domain}\n${bar}\n${renderBundle(b, format, io)}`).join(''));
    return 0;
  },
};

const set: Command = {
  name: 'set',
  summary: "Sets (creates or replaces) a federated trust domain's bundle, from --path, --data or standard input.",
  flags: [
    trustDomainFlag('Trust domain the bundle belongs to, e.g. partner.org; required'),
    { name: 'path', aliases: ['bundle-file'], type: 'string', valueName: 'FILE', description: 'File holding the bundle (- or none: read standard input)' },
    { name: 'data', type: 'string', valueName: 'TEXT', description: 'The bundle itself, instead of --path' },
    { ...FORMAT_FLAG, description: 'Format of the input: pem (CA certificates) or spiffe (JWK set); default: detected' },
    ADMIN_SOCKET_FLAG,
    OUTPUT_FLAG,
  ],
  async run(args, io) {
    const td = checkTrustDomain(args.requiredString('trust-domain'));
    const file = args.string('path');
    const data = args.string('data');
    if (file !== undefined && data !== undefined) throw invalidArgument('--path and --data exclude each other');
    const format = args.string('format');
    // `--path -` is standard input, as `entry create --data -` and `entry delete --file -` take it.
    const bundle = data ?? (file !== undefined && file !== '-' ? readBundleFile(file, td, format) : await readAll(io, 'no bundle given: pass --path FILE or --data TEXT', 'the bundle (PEM or a SPIFFE bundle document; or pass --path FILE)'));
    // A repeated key is refused here for every input, as for a --path file, so the refusal names where the text came
    // from; the server refuses it too (federatedBundleFromText), but can only say "the SPIFFE bundle".
    if (file === undefined || file === '-') refuseRepeatedKeys(bundle, data !== undefined ? 'the bundle in --data' : 'the bundle on standard input');
    const b = await withAdminClient(args, io.env, (client) =>
      refusalAsBatchResult(outputFormat(args) === 'json', io, {}, () =>
        client.call('Bundles', 'SetFederatedBundle', { trust_domain: td, bundle, ...(format ? { format } : {}) }),
      ),
    );
    // spire-server's BatchSetFederatedBundleResponse.
    io.stdout.write(outputFormat(args) === 'json' ? renderJson({ results: [{ status: spireStatus(0, ''), bundle: spireBundle(b) }] }) : `Bundle set for ${td} (sequence ${b.sequence ?? 0}).\n`);
    warnOfLeftOutKeys(td, bundle, format, io);
    warnOfAnotherTrustDomain(td, bundle, format, io);
    return 0;
  },
};

const remove: Command = {
  name: 'delete',
  summary: "Deletes a federated trust domain's bundle.",
  flags: [
    trustDomainFlag('Trust domain whose bundle to delete; required'),
    {
      name: 'mode',
      type: 'string',
      // Checked in run rather than as choices, so that spire-server's third mode gets its own answer.
      valueName: 'restrict|dissociate',
      description: 'While entries federate with it: restrict (default) refuses; dissociate takes it out of those entries',
    },
    ADMIN_SOCKET_FLAG,
    OUTPUT_FLAG,
  ],
  async run(args, io) {
    const td = checkTrustDomain(args.requiredString('trust-domain'));
    const mode = args.string('mode');
    if (mode === 'delete') {
      throw invalidArgument(
        'flag --mode delete (spire-server\'s, which deletes the entries that federate with the trust domain) is not offered: ' +
          'delete those entries with "meshid-server entry delete" first, or take the trust domain out of them with --mode dissociate',
      );
    }
    if (mode !== undefined && mode !== 'restrict' && mode !== 'dissociate') {
      throw invalidArgument(`flag --mode must be one of restrict, dissociate, got "${mode}"`);
    }
    const r = await withAdminClient(args, io.env, (client) =>
      refusalAsBatchResult(outputFormat(args) === 'json', io, { trust_domain: td }, () =>
        client.call('Bundles', 'DeleteFederatedBundle', { trust_domain: td, ...(mode !== undefined ? { mode } : {}) }),
      ),
    );
    const dissociated = r.dissociated_entries ?? 0;
    // SPIRE's document has no place for it: said on stderr, so stdout stays one document.
    if (dissociated > 0 && outputFormat(args) === 'json') {
      io.stderr.write(`Note: ${dissociated} ${dissociated === 1 ? 'entry no longer federates' : 'entries no longer federate'} with ${td}\n`);
    }
    io.stdout.write(
      outputFormat(args) === 'json'
        ? renderJson({ results: [{ status: spireStatus(0, ''), trust_domain: td }] }) // spire-server's BatchDeleteFederatedBundleResponse
        : `Bundle deleted for ${td}.${dissociated > 0 ? ` ${dissociated} ${dissociated === 1 ? 'entry no longer federates' : 'entries no longer federate'} with it.` : ''}\n`,
    );
    return 0;
  },
};

/** `bundle count`, as spire-server's: every bundle the server holds, its own included. */
const count: Command = {
  name: 'count',
  summary: 'Counts the bundles the server holds: its own and the federated ones.',
  flags: [ADMIN_SOCKET_FLAG, OUTPUT_FLAG],
  async run(args, io) {
    const res = await withAdminClient(args, io.env, (client) => client.call('Bundles', 'ListFederatedBundles', {}));
    const n = (res.bundles ?? []).length + 1;
    io.stdout.write(outputFormat(args) === 'json' ? renderJson({ count: n }) : `${n} ${n === 1 ? 'bundle' : 'bundles'}\n`);
    return 0;
  },
};

export const BUNDLE_COMMANDS: readonly Command[] = [show, list, count, set, remove];

/** `meshid-server bundle show|list|count|set|delete`: own and federated bundles (admin API meshid.admin.v1.Bundles). */
export async function bundleCommand(argv: string[], io: CliIo): Promise<number> {
  return runGroup('meshid-server bundle', 'Manage the own and federated trust bundles.', BUNDLE_COMMANDS, argv, io);
}
