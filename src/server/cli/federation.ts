import { invalidArgument, MeshidError, type ErrorCode } from '../../common/errors.js';
import { readAll, readTextFile } from '../../common/cli/input.js';
import { toServiceError } from '../../common/grpc-status.js';
import type { FlagSpec, ParsedArgs } from '../../common/cli/args.js';
import { runGroup, type Command } from '../../common/cli/command.js';
import { errorLine, OUTPUT_FLAG, outputFormat, renderFields, renderJson, type CliIo } from '../../common/cli/output.js';
import { ADMIN_SOCKET_FLAG, withAdminClient, type AdminClient } from './admin-client.js';
import type { ProtoBundle, ProtoFederationRelationship } from './admin-types.js';
import { refusalAsBatchResult, spireRelationship, spireStatus } from './spire-output.js';
import { readBundleInput, warnOfAnotherTrustDomain, warnOfLeftOutKeys } from './bundle-file.js';
import { parseRelationshipFile, type RelationshipRequest } from './relationship-file.js';
import { isoTime } from './entry-output.js';
import { checkSpiffeId, checkTrustDomain, trustDomainFlag } from './flags.js';

/**
 * The stored federated bundles by trust domain: spire-server's relationships carry their trust domain's bundle
 * (trust_domain_bundle), which meshid's admin API keeps apart.
 */
async function storedBundles(client: AdminClient): Promise<Map<string, ProtoBundle>> {
  const res = await client.call('Bundles', 'ListFederatedBundles', {});
  return new Map((res.bundles ?? []).map((b) => [b.trust_domain ?? '', b]));
}

/**
 * Relationships in spire-server's shape, each with its stored bundle; the bundles are looked up only for JSON. After a
 * create or update (`changed`), a look-up that fails leaves the bundles out, said on stderr: the change is done, and
 * reporting it as failed would have the operator repeat it (AlreadyExists).
 */
async function spireRelationships(
  client: AdminClient, args: ParsedArgs, relationships: readonly ProtoFederationRelationship[], changed?: CliIo,
): Promise<Array<Record<string, unknown>>> {
  if (outputFormat(args) !== 'json' || relationships.length === 0) return [];
  const bundles = await storedBundles(client).catch((err: unknown) => {
    if (changed === undefined) throw err;
    changed.stderr.write(`Warning: the stored bundles could not be read (${errorLine(err).replace(/^Error: /, '')}): trust_domain_bundle is left out\n`);
    return new Map<string, ProtoBundle>();
  });
  return relationships.map((r) => spireRelationship(r, bundles.get(r.trust_domain ?? '')));
}

function renderRelationship(r: ProtoFederationRelationship): string {
  return renderFields([
    ['Trust domain', r.trust_domain ?? ''],
    ['Bundle endpoint URL', r.bundle_endpoint_url ?? ''],
    ['Bundle endpoint profile', r.bundle_endpoint_profile ?? ''],
    ['Endpoint SPIFFE ID', r.endpoint_spiffe_id || undefined],
    ['Defined in', r.source === 'config' ? 'config file (federates_with)' : 'admin API'],
    ['Last attempt', isoTime(r.last_attempt_at) ?? 'never'],
    ['Last success', isoTime(r.last_success_at) ?? 'never'],
    ['Last error', r.last_error || undefined],
    ['Next poll', isoTime(r.next_poll_at)],
  ]);
}

// spire-server's spellings (-trustDomain, -id, -bundleEndpointURL, ...) are accepted too.
const relationshipTrustDomainFlag = (description: string): FlagSpec => ({ ...trustDomainFlag(description), aliases: ['id', 'trustDomain'] });
const NAMED_RELATIONSHIP_FLAG = relationshipTrustDomainFlag('Trust domain of the relationship; required');
const RELATIONSHIP_FLAGS: FlagSpec[] = [
  relationshipTrustDomainFlag('Trust domain to federate with, e.g. partner.org; required'),
  { name: 'bundle-endpoint-url', aliases: ['bundleEndpointURL'], type: 'string', valueName: 'URL', description: "The partner's bundle endpoint (https://...); required" },
  {
    name: 'bundle-endpoint-profile', aliases: ['bundleEndpointProfile'], type: 'string', choices: ['https_spiffe', 'https_web'],
    description: 'https_spiffe: the endpoint presents an SVID of the trust domain; https_web: a web PKI certificate; required',
  },
  { name: 'endpoint-spiffe-id', aliases: ['endpointSpiffeID'], type: 'string', valueName: 'ID', description: "https_spiffe: the SPIFFE ID of the endpoint's SVID; required with that profile" },
];

const list: Command = {
  name: 'list',
  summary: "Lists the federation relationships (the config's and those created here) and how their bundle polls go.",
  flags: [ADMIN_SOCKET_FLAG, OUTPUT_FLAG],
  async run(args, io) {
    const { relationships, json } = await withAdminClient(args, io.env, async (client) => {
      const listed = (await client.call('Federation', 'ListFederationRelationships', {})).relationships ?? [];
      return { relationships: listed, json: await spireRelationships(client, args, listed) };
    });
    // spire-server's ListFederationRelationshipsResponse.
    if (outputFormat(args) === 'json') io.stdout.write(renderJson({ federation_relationships: json, next_page_token: '' }));
    else {
      const head = `Found ${relationships.length} federation ${relationships.length === 1 ? 'relationship' : 'relationships'}\n`;
      io.stdout.write(head + relationships.map((r) => `\n${renderRelationship(r)}`).join(''));
    }
    return 0;
  },
};

/**
 * The relationship the flags describe. The profile's need of an endpoint SPIFFE ID is checked here, naming the flags:
 * the server's refusal names endpoint_spiffe_id, its key in config files and the admin API, which someone who typed
 * flags has never seen.
 */
function relationshipFromFlags(args: ParsedArgs): ProtoFederationRelationship {
  const endpointId = args.string('endpoint-spiffe-id');
  const trustDomain = checkTrustDomain(args.requiredString('trust-domain'));
  const url = args.requiredString('bundle-endpoint-url');
  const profile = args.requiredString('bundle-endpoint-profile');
  if (profile === 'https_spiffe' && endpointId === undefined) {
    throw invalidArgument(
      `--bundle-endpoint-profile https_spiffe needs --endpoint-spiffe-id: the SPIFFE ID of the SVID ${trustDomain}'s bundle endpoint ` +
        `presents (spiffe://${trustDomain}/spire/server for a SPIRE server, spiffe://${trustDomain}/meshid/server for a meshid-server)`,
    );
  }
  if (profile === 'https_web' && endpointId !== undefined) {
    throw invalidArgument("--endpoint-spiffe-id is for --bundle-endpoint-profile https_spiffe; https_web authenticates the URL's host name with the web PKI: leave it out");
  }
  return {
    trust_domain: trustDomain,
    bundle_endpoint_url: url,
    bundle_endpoint_profile: profile,
    ...(endpointId !== undefined ? { endpoint_spiffe_id: checkSpiffeId(endpointId, 'Endpoint SPIFFE ID') } : {}),
  };
}

/**
 * create's and update's one relationship from flags: the call, then what it did, or why not. With --output json that
 * is spire-server's BatchCreate/UpdateFederationRelationshipResponse, a refusal included (its status only, as
 * spire-server prints it), and the refusal is the error line too.
 */
async function relationshipFromFlagsCall(
  args: ParsedArgs, io: CliIo, method: 'CreateFederationRelationship' | 'UpdateFederationRelationship', what: string,
): Promise<number> {
  const relationship = relationshipFromFlags(args);
  const bundle = await bundleFromFlags(args, relationship.trust_domain!, io);
  const json = outputFormat(args) === 'json';
  await withAdminClient(args, io.env, async (client) => {
    let r: ProtoFederationRelationship;
    try {
      r = await client.call('Federation', method, { relationship, ...bundle });
    } catch (err) {
      if (json && err instanceof MeshidError && REFUSALS.has(err.code)) {
        io.stdout.write(renderJson({ results: [{ status: spireStatus(toServiceError(err).code, err.message) }] }));
      }
      throw err;
    }
    if (json) io.stdout.write(renderJson({ results: [{ status: spireStatus(0, ''), federation_relationship: (await spireRelationships(client, args, [r], io))[0] }] }));
    else io.stdout.write(`Federation relationship with ${r.trust_domain} ${what}.\n\n${renderRelationship(r)}`);
  });
  warnOfStoredBundle({ relationship, ...bundle }, io);
  return 0;
}

/**
 * After a relationship was stored with its bundle: on stderr, the keys of a SPIFFE bundle document that were left out
 * and a CA of another trust domain, each with why, as bundle set warns. The flags and --data say the same of the same
 * bundle, or a SPIRE file would have the operator trust roots that are not trusted, or trusted for the wrong domain.
 */
function warnOfStoredBundle(request: RelationshipRequest, io: CliIo): void {
  const { relationship, bundle, bundle_format: format } = request;
  if (bundle === undefined) return;
  warnOfLeftOutKeys(relationship.trust_domain!, bundle, format || undefined, io);
  warnOfAnotherTrustDomain(relationship.trust_domain!, bundle, format || undefined, io);
}

/** create's and update's --bundle-path: the partner's bundle, stored by the same call. */
const bundleFlags = (description: string): FlagSpec[] => [
  { name: 'bundle-path', aliases: ['trustDomainBundlePath'], type: 'string', valueName: 'FILE', description: `${description} ("-": standard input)` },
  { name: 'bundle-format', aliases: ['trustDomainBundleFormat'], type: 'string', choices: ['pem', 'spiffe'], description: 'Format of --bundle-path; default: detected' },
];

/**
 * The request fields for --bundle-path ("-": standard input), read and checked here so a bad file is refused naming
 * it; none without it.
 */
async function bundleFromFlags(args: ParsedArgs, trustDomain: string, io: CliIo): Promise<{ bundle?: string; bundle_format?: string }> {
  const file = args.string('bundle-path');
  const format = args.string('bundle-format');
  if (format !== undefined && file === undefined) throw invalidArgument('--bundle-format goes with --bundle-path');
  return file === undefined ? {} : { bundle: await readBundleInput(file, '--bundle-path', trustDomain, format, io), bundle_format: format ?? '' };
}

/** create's and update's --data, as spire-server federation create|update -data. */
const dataFlag = (verb: string): FlagSpec => ({
  name: 'data',
  type: 'string',
  valueName: 'FILE',
  description: `${verb} every relationship of a JSON file in spire-server federation create -data format ("-": standard input), instead of the flags`,
});

/** Refusals of one relationship of a file; anything else (the server gone, say) ends the command. */
const REFUSALS = new Set<ErrorCode>(['invalid_argument', 'already_exists', 'not_found', 'failed_precondition', 'aborted']);

/**
 * create's and update's --data: each relationship of the file in turn. Prints what was done and, on stderr, what was
 * refused and why, as spire-server does; exit 1 when anything was refused.
 */
async function relationshipsFromFile(
  args: ParsedArgs, io: CliIo, file: string, method: 'CreateFederationRelationship' | 'UpdateFederationRelationship', verb: 'create' | 'update',
): Promise<number> {
  const other = args.given.find((f) => !['data', 'admin-socket', 'output'].includes(f));
  if (other !== undefined) throw invalidArgument(`--data ${verb}s the relationships of its file: it cannot be combined with --${other}`);
  const text = file === '-'
    ? await readAll(io, '--data - reads the relationships from standard input, and there is none', 'the federation relationships (JSON, as spire-server federation create -data takes)')
    : readTextFile(file, 'federation relationship file');
  const requests = parseRelationshipFile(text, file === '-' ? 'standard input' : file);
  if (requests.length === 0) throw invalidArgument(`${file === '-' ? 'standard input' : file} holds no federation relationships`);
  const results: Array<{ request: RelationshipRequest; relationship: ProtoFederationRelationship; error?: MeshidError }> = [];
  let fatal: unknown;
  let json: Array<Record<string, unknown>> = [];
  await withAdminClient(args, io.env, async (client) => {
    for (const request of requests) {
      try {
        results.push({ request, relationship: await client.call('Federation', method, request) });
      } catch (err) {
        if (!(err instanceof MeshidError) || !REFUSALS.has(err.code)) {
          fatal = err;
          break;
        }
        results.push({ request, relationship: request.relationship, error: err });
      }
    }
    // After a failure that ended the run, with no bundles: that call would fail as well.
    if (fatal === undefined) json = await spireRelationships(client, args, results.map((r) => r.relationship), io);
    else json = results.map((r) => spireRelationship(r.relationship));
  });
  const failed = results.filter((r) => r.error !== undefined);
  if (outputFormat(args) === 'json') {
    // spire-server's BatchCreate/UpdateFederationRelationshipResponse: a refused relationship has its status only.
    io.stdout.write(renderJson({
      results: results.map((r, i) =>
        r.error === undefined
          ? { status: spireStatus(0, ''), federation_relationship: json[i] }
          : { status: spireStatus(toServiceError(r.error).code, r.error.message) },
      ),
    }));
  } else {
    const done = results.filter((r) => r.error === undefined);
    if (done.length > 0) {
      const noun = requests.length === 1 ? 'relationship' : 'relationships';
      io.stdout.write(`${verb === 'create' ? 'Created' : 'Updated'} ${done.length} of ${requests.length} federation ${noun}:\n${done.map((r) => `\n${renderRelationship(r.relationship)}`).join('')}`);
    }
    for (const r of failed) {
      io.stderr.write(`Failed to ${verb} the federation relationship with ${r.relationship.trust_domain}: ${errorLine(r.error).slice('Error: '.length)}\n`);
    }
  }
  for (const r of results) if (r.error === undefined) warnOfStoredBundle(r.request, io);
  if (fatal !== undefined) throw fatal;
  return failed.length === 0 ? 0 : 1;
}

const create: Command = {
  name: 'create',
  summary: 'Creates a federation relationship, stored by the server and polled at once (no restart).',
  flags: [
    ...RELATIONSHIP_FLAGS,
    ...bundleFlags("The trust domain's bundle, stored with the relationship: an https_spiffe endpoint whose SPIFFE ID is in this trust domain is authenticated by its roots from the first fetch"),
    dataFlag('Create'),
    ADMIN_SOCKET_FLAG,
    OUTPUT_FLAG,
  ],
  async run(args, io) {
    const file = args.string('data');
    if (file !== undefined) return relationshipsFromFile(args, io, file, 'CreateFederationRelationship', 'create');
    return relationshipFromFlagsCall(args, io, 'CreateFederationRelationship', 'created');
  },
};

const update: Command = {
  name: 'update',
  summary: 'Replaces the endpoint settings of a relationship created with "federation create".',
  flags: [
    ...RELATIONSHIP_FLAGS,
    ...bundleFlags("The trust domain's bundle, stored with the settings (in one step): an https_spiffe endpoint whose SPIFFE ID is in this trust domain is authenticated by its roots"),
    dataFlag('Update'),
    ADMIN_SOCKET_FLAG,
    OUTPUT_FLAG,
  ],
  async run(args, io) {
    const file = args.string('data');
    if (file !== undefined) return relationshipsFromFile(args, io, file, 'UpdateFederationRelationship', 'update');
    return relationshipFromFlagsCall(args, io, 'UpdateFederationRelationship', 'updated');
  },
};

const show: Command = {
  name: 'show',
  summary: 'Shows one federation relationship and how its bundle polls go.',
  flags: [NAMED_RELATIONSHIP_FLAG, ADMIN_SOCKET_FLAG, OUTPUT_FLAG],
  async run(args, io) {
    const td = checkTrustDomain(args.requiredString('trust-domain'));
    const { r, json } = await withAdminClient(args, io.env, async (client) => {
      const got = await client.call('Federation', 'GetFederationRelationship', { trust_domain: td });
      return { r: got, json: await spireRelationships(client, args, [got]) };
    });
    // spire-server prints GetFederationRelationship's spire.api.types.FederationRelationship.
    io.stdout.write(outputFormat(args) === 'json' ? renderJson(json[0]) : renderRelationship(r));
    return 0;
  },
};

const del: Command = {
  name: 'delete',
  summary: 'Deletes a relationship created with "federation create"; the partner\'s bundle stays (see bundle delete).',
  flags: [NAMED_RELATIONSHIP_FLAG, ADMIN_SOCKET_FLAG, OUTPUT_FLAG],
  async run(args, io) {
    const td = checkTrustDomain(args.requiredString('trust-domain'));
    const { r, bundleStored } = await withAdminClient(args, io.env, async (client) => {
      const deleted = await refusalAsBatchResult(outputFormat(args) === 'json', io, { trust_domain: td }, () =>
        client.call('Federation', 'DeleteFederationRelationship', { trust_domain: td }),
      );
      // Whether there is a bundle left to delete: a relationship whose endpoint never answered leaves none. Only a
      // remark: the delete is done, and a look-up that fails must not report it as failed (a retry is NotFound).
      const stored = await client.call('Bundles', 'ListFederatedBundles', {}).then(
        (res) => (res.bundles ?? []).some((b) => b.trust_domain === td),
        (err: unknown) => errorLine(err).replace(/^Error: /, ''),
      );
      return { r: deleted, bundleStored: stored };
    });
    const remove = `"meshid-server bundle delete --trust-domain ${td}" removes`;
    const after =
      bundleStored === true
        ? `its bundle stays stored (${remove} it)`
        : bundleStored === false
          ? 'no bundle of it is stored'
          : `whether a bundle of it is stored could not be checked (${bundleStored}): ${remove} one`;
    if (outputFormat(args) === 'json') {
      // spire-server's BatchDeleteFederationRelationshipResponse. A look-up that failed is said on stderr, so stdout
      // stays one document.
      io.stdout.write(renderJson({ results: [{ status: spireStatus(0, ''), trust_domain: r.trust_domain ?? td }] }));
      if (typeof bundleStored !== 'boolean') io.stderr.write(`Warning: ${after}.\n`);
    } else io.stdout.write(`Federation relationship with ${td} deleted; ${after}.\n`);
    return 0;
  },
};

const refresh: Command = {
  name: 'refresh',
  summary: "Fetches a federated trust domain's bundle from its endpoint now; fails with the reason if it cannot.",
  flags: [NAMED_RELATIONSHIP_FLAG, ADMIN_SOCKET_FLAG, OUTPUT_FLAG],
  async run(args, io) {
    const td = checkTrustDomain(args.requiredString('trust-domain'));
    const r = await withAdminClient(args, io.env, (client) => client.call('Federation', 'RefreshBundle', { trust_domain: td }));
    // spire-server prints the spire.api.types.Status of a refresh that succeeded.
    io.stdout.write(outputFormat(args) === 'json' ? renderJson(spireStatus(0, '')) : `Bundle of ${td} refreshed.\n\n${renderRelationship(r)}`);
    return 0;
  },
};

/** `meshid-server federation list|show|create|update|delete|refresh` (admin API meshid.admin.v1.Federation), as spire-server's. */
export async function federationCommand(argv: string[], io: CliIo): Promise<number> {
  return runGroup(
    'meshid-server federation',
    'Federation relationships: the config\'s federates_with, and those created here.',
    [list, show, create, update, del, refresh],
    argv,
    io,
  );
}
