import { runGroup, type Command } from '../../common/cli/command.js';
import { OUTPUT_FLAG, outputFormat, renderFields, renderJson, type CliIo } from '../../common/cli/output.js';
import { ADMIN_SOCKET_FLAG, withAdminClient } from './admin-client.js';
import type { ProtoFederationRelationship } from './admin-types.js';
import { isoTime } from './entry-output.js';
import { checkTrustDomain, trustDomainFlag } from './flags.js';

/** A relationship with every field present: the --output json shape. */
function fullRelationship(r: ProtoFederationRelationship): Record<string, unknown> {
  return {
    trust_domain: r.trust_domain ?? '',
    bundle_endpoint_url: r.bundle_endpoint_url ?? '',
    bundle_endpoint_profile: r.bundle_endpoint_profile ?? '',
    endpoint_spiffe_id: r.endpoint_spiffe_id ?? '',
    last_attempt_at: r.last_attempt_at ?? 0,
    last_success_at: r.last_success_at ?? 0,
    last_error: r.last_error ?? '',
    next_poll_at: r.next_poll_at ?? 0,
  };
}

function renderRelationship(r: ProtoFederationRelationship): string {
  return renderFields([
    ['Trust domain', r.trust_domain ?? ''],
    ['Bundle endpoint URL', r.bundle_endpoint_url ?? ''],
    ['Bundle endpoint profile', r.bundle_endpoint_profile ?? ''],
    ['Endpoint SPIFFE ID', r.endpoint_spiffe_id || undefined],
    ['Last attempt', isoTime(r.last_attempt_at) ?? 'never'],
    ['Last success', isoTime(r.last_success_at) ?? 'never'],
    ['Last error', r.last_error || undefined],
    ['Next poll', isoTime(r.next_poll_at)],
  ]);
}

const list: Command = {
  name: 'list',
  summary: "Lists the federation relationships of the server's config and how their bundle polls go.",
  flags: [ADMIN_SOCKET_FLAG, OUTPUT_FLAG],
  async run(args, io) {
    const res = await withAdminClient(args, io.env, (client) => client.call('Federation', 'ListFederationRelationships', {}));
    const relationships = res.relationships ?? [];
    if (outputFormat(args) === 'json') io.stdout.write(renderJson({ relationships: relationships.map(fullRelationship) }));
    else {
      const head = `Found ${relationships.length} federation ${relationships.length === 1 ? 'relationship' : 'relationships'}\n`;
      io.stdout.write(head + relationships.map((r) => `\n${renderRelationship(r)}`).join(''));
    }
    return 0;
  },
};

const refresh: Command = {
  name: 'refresh',
  summary: "Fetches a federated trust domain's bundle from its endpoint now; fails with the reason if it cannot.",
  flags: [trustDomainFlag('Trust domain of the relationship; required'), ADMIN_SOCKET_FLAG, OUTPUT_FLAG],
  async run(args, io) {
    const td = checkTrustDomain(args.requiredString('trust-domain'));
    const r = await withAdminClient(args, io.env, (client) => client.call('Federation', 'RefreshBundle', { trust_domain: td }));
    io.stdout.write(outputFormat(args) === 'json' ? renderJson(fullRelationship(r)) : `Bundle of ${td} refreshed.\n\n${renderRelationship(r)}`);
    return 0;
  },
};

/** `meshid-server federation list|refresh` (admin API meshid.admin.v1.Federation), as spire-server's. */
export async function federationCommand(argv: string[], io: CliIo): Promise<number> {
  return runGroup('meshid-server federation', 'Federation relationships (configured in federates_with).', [list, refresh], argv, io);
}
