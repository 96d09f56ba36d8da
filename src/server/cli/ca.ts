import type { FlagSpec } from '../../common/cli/args.js';
import { runGroup, type Command } from '../../common/cli/command.js';
import { OUTPUT_FLAG, outputFormat, renderFields, renderJson, type CliIo } from '../../common/cli/output.js';
import { ADMIN_SOCKET_FLAG, withAdminClient } from './admin-client.js';
import type { ProtoAuthority } from './admin-types.js';
import { isoTime } from './entry-output.js';

/** An authority with every field present: the --output json shape. */
function fullAuthority(a: ProtoAuthority): Required<ProtoAuthority> {
  return {
    id: a.id ?? '',
    kind: a.kind ?? '',
    datacenter: a.datacenter ?? '',
    state: a.state ?? '',
    not_before: a.not_before ?? 0,
    not_after: a.not_after ?? 0,
    fingerprint: a.fingerprint ?? '',
    subject: a.subject ?? '',
  };
}

/** One authority (root, DC intermediate or JWT key) as a block: kind, datacenter, state, validity, fingerprint. */
export function renderAuthority(a: ProtoAuthority): string {
  return renderFields([
    ['Authority ID', a.id ?? ''],
    ['Kind', a.kind ?? ''],
    // Roots belong to the whole trust domain, not to one datacenter.
    ['Datacenter', a.datacenter || '-'],
    ['State', a.state ?? ''],
    ['Subject', a.subject || undefined],
    ['Not before', isoTime(a.not_before)],
    ['Not after', isoTime(a.not_after)],
    ['Fingerprint', a.fingerprint ?? ''],
  ]);
}

const show: Command = {
  name: 'show',
  summary: 'Lists the certificate authorities: roots, per-datacenter intermediates and JWT keys, with their state.',
  flags: [ADMIN_SOCKET_FLAG, OUTPUT_FLAG],
  async run(args, io) {
    const res = await withAdminClient(args, io.env, (client) => client.call('Authorities', 'ListAuthorities', {}));
    const authorities = (res.authorities ?? []).map(fullAuthority);
    if (outputFormat(args) === 'json') {
      io.stdout.write(renderJson({ trust_domain: res.trust_domain ?? '', authorities }));
    } else {
      io.stdout.write(renderFields([['Trust domain', res.trust_domain ?? '']]) + authorities.map((a) => `\n${renderAuthority(a)}`).join(''));
    }
    return 0;
  },
};

const rotateRoot: Command = {
  name: 'rotate-root',
  summary: 'Prepares a new root now: published in the bundle at once, signing intermediates after the activation delay.',
  flags: [ADMIN_SOCKET_FLAG, OUTPUT_FLAG],
  async run(args, io) {
    const root = fullAuthority(await withAdminClient(args, io.env, (client) => client.call('Authorities', 'RotateRoot', {})));
    io.stdout.write(outputFormat(args) === 'json' ? renderJson(root) : renderAuthority(root));
    return 0;
  },
};

/** `ca taint` and `ca revoke`: one authority by ID, then the journal as it stands. */
function authorityAction(
  name: string, summary: string, method: 'TaintAuthority' | 'RevokeAuthority', done: string, extraFlags: readonly FlagSpec[] = [],
): Command {
  return {
    name,
    summary,
    flags: [
      { name: 'id', aliases: ['authorityID'], type: 'string', valueName: 'ID', description: 'Authority ID from ca show; required' },
      ...extraFlags,
      ADMIN_SOCKET_FLAG,
      OUTPUT_FLAG,
    ],
    async run(args, io) {
      const id = args.requiredString('id', '(see ca show)');
      const res = await withAdminClient(args, io.env, (client) =>
        method === 'RevokeAuthority' && args.bool('force') === true
          ? client.call('Authorities', method, { id, force: true })
          : client.call('Authorities', method, { id }),
      );
      const authorities = (res.authorities ?? []).map(fullAuthority);
      if (outputFormat(args) === 'json') io.stdout.write(renderJson({ trust_domain: res.trust_domain ?? '', authorities }));
      else io.stdout.write(`Authority ${id} is ${done}.\n` + authorities.map((a) => `\n${renderAuthority(a)}`).join(''));
      return 0;
    },
  };
}

const taint = authorityAction(
  'taint',
  'Marks an authority compromised: it stops signing at once, is replaced, and agents re-sign what chains to it.',
  'TaintAuthority',
  'tainted',
);
const revoke = authorityAction(
  'revoke',
  'Removes a tainted root or JWT key from the bundle now; what still chains to it stops verifying. Refused while ' +
    'attested agents still chain to the root (they would need new join tokens), unless --force.',
  'RevokeAuthority',
  'revoked',
  [{ name: 'force', type: 'bool', description: 'Revoke a root even though attested agents still chain to it: they are cut off' }],
);

/** `meshid-server ca show|rotate-root|taint|revoke`: the CA journal (admin API meshid.admin.v1.Authorities). */
export async function caCommand(argv: string[], io: CliIo): Promise<number> {
  return runGroup('meshid-server ca', 'Inspect and rotate the certificate authorities.', [show, rotateRoot, taint, revoke], argv, io);
}
