import type { FlagSpec } from '../../common/cli/args.js';
import { runGroup, type Command } from '../../common/cli/command.js';
import { OUTPUT_FLAG, outputFormat, renderFields, renderJson, type CliIo } from '../../common/cli/output.js';
import { invalidArgument } from '../../common/errors.js';
import { ADMIN_SOCKET_FLAG, withAdminClient } from './admin-client.js';
import type { ListAuthoritiesResponse, ProtoAuthority, ProtoRevokedJwtKey, ProtoRevokedRoot } from './admin-types.js';
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
    upstream_ca: a.upstream_ca ?? false,
    activates_at: a.activates_at ?? 0,
  };
}

/** One authority (root, DC intermediate or JWT key) as a block: kind, datacenter, state, validity, fingerprint. */
function renderAuthority(a: ProtoAuthority): string {
  return renderFields([
    ['Authority ID', a.id ?? ''],
    // An upstream CA's root leaves the journal differently (README, "Switching the upstream CA off").
    ['Kind', a.upstream_ca === true ? `${a.kind ?? ''} (upstream CA)` : (a.kind ?? '')],
    // Roots belong to the whole trust domain, not to one datacenter.
    ['Datacenter', a.datacenter || '-'],
    ['State', a.state ?? ''],
    // A prepared root only: when it takes over unless `ca activate` comes first.
    ['Activates at', a.activates_at ? isoTime(a.activates_at) : undefined],
    ['Subject', a.subject || undefined],
    ['Not before', isoTime(a.not_before)],
    ['Not after', isoTime(a.not_after)],
    ['Fingerprint', a.fingerprint ?? ''],
  ]);
}

/** A revoked root as the server keeps it, with every field present: the --output json shape. */
function fullRevokedRoot(r: ProtoRevokedRoot): Required<Omit<ProtoRevokedRoot, 'anchors'>> & { anchors: Array<{ subject: string; fingerprint: string }> } {
  return {
    id: r.id ?? '',
    subject: r.subject ?? '',
    fingerprint: r.fingerprint ?? '',
    revoked_at: r.revoked_at ?? 0,
    anchors: (r.anchors ?? []).map((a) => ({ subject: a.subject ?? '', fingerprint: a.fingerprint ?? '' })),
  };
}

/**
 * A root `ca revoke` took out of the journal: listed so that an operator can tell a trust anchor the server warns
 * about (published again while it anchored a revoked CA) by its fingerprint.
 */
function renderRevokedRoot(r: ReturnType<typeof fullRevokedRoot>): string {
  return renderFields([
    // Not "Authority ID": it is no authority of the journal any more.
    ['Revoked root', r.id],
    ['Subject', r.subject || undefined],
    ['Revoked at', isoTime(r.revoked_at)],
    ['Fingerprint', r.fingerprint],
    ['Trust anchor', r.anchors.map((a) => `${a.subject} (sha256 ${a.fingerprint})`)],
  ]);
}

/** A revoked JWT key as the server keeps it, with every field present: the --output json shape. */
function fullRevokedJwtKey(k: ProtoRevokedJwtKey): Required<ProtoRevokedJwtKey> {
  return { id: k.id ?? '', key_id: k.key_id ?? '', revoked_at: k.revoked_at ?? 0 };
}

/**
 * A JWT key `ca revoke` took out of the journal: a JWT-SVID naming its key ID (`kid`) no longer validates anywhere the
 * bundle reached, which is what an operator tracing such a refusal looks for.
 */
function renderRevokedJwtKey(k: Required<ProtoRevokedJwtKey>): string {
  return renderFields([
    ['Revoked JWT key', k.id],
    ['Key ID', k.key_id],
    ['Revoked at', isoTime(k.revoked_at)],
  ]);
}

/**
 * The CA journal as `ca show` prints it, and `ca taint` / `ca revoke` after their action: the same JSON shape for all
 * three, so a script reads any of them alike. `done` heads the pretty form of an action.
 */
function renderJournal(res: ListAuthoritiesResponse, format: 'json' | 'pretty', done?: string): string {
  const authorities = (res.authorities ?? []).map(fullAuthority);
  const revoked = (res.revoked_roots ?? []).map(fullRevokedRoot);
  const revokedJwtKeys = (res.revoked_jwt_keys ?? []).map(fullRevokedJwtKey);
  if (format === 'json') {
    return renderJson({ trust_domain: res.trust_domain ?? '', authorities, revoked_roots: revoked, revoked_jwt_keys: revokedJwtKeys });
  }
  return (
    (done === undefined ? renderFields([['Trust domain', res.trust_domain ?? '']]) : `${done}\n`) +
    authorities.map((a) => `\n${renderAuthority(a)}`).join('') +
    revoked.map((r) => `\n${renderRevokedRoot(r)}`).join('') +
    revokedJwtKeys.map((k) => `\n${renderRevokedJwtKey(k)}`).join('')
  );
}

const show: Command = {
  name: 'show',
  summary:
    'Lists the certificate authorities: roots, per-datacenter intermediates and JWT keys, with their state: prepared (published, ' +
    'not signing yet), active, old (replaced; published while something chains to it) or tainted.',
  flags: [ADMIN_SOCKET_FLAG, OUTPUT_FLAG],
  async run(args, io) {
    const res = await withAdminClient(args, io.env, (client) => client.call('Authorities', 'ListAuthorities', {}));
    io.stdout.write(renderJournal(res, outputFormat(args)));
    return 0;
  },
};

const rotateRoot: Command = {
  name: 'rotate-root',
  summary:
    'Prepares a new root now: published in the bundle at once, signing intermediates after the activation delay (root_activation_delay, 24h by default; ' +
    'ca show says when, ca activate switches sooner). With a root already prepared, none is made and that one is shown.',
  flags: [ADMIN_SOCKET_FLAG, OUTPUT_FLAG],
  async run(args, io) {
    const { root, newlyPrepared } = await withAdminClient(args, io.env, async (client) => {
      // The server answers with the root already prepared when there is one, rather than make another, and says which
      // (newly_prepared); from a server that predates that field, the roots it had before tell the two apart.
      const before = await client.call('Authorities', 'ListAuthorities', {});
      const known = new Set((before.authorities ?? []).filter((a) => a.kind === 'root').map((a) => a.id));
      const rotated = await client.call('Authorities', 'RotateRoot', {});
      return { root: fullAuthority(rotated), newlyPrepared: rotated.newly_prepared ?? !known.has(rotated.id) };
    });
    // The Authority shape scripts read, and whether a root was made: a rotate-root that rotated nothing looks the same.
    if (outputFormat(args) === 'json') io.stdout.write(renderJson({ ...root, newly_prepared: newlyPrepared }));
    else {
      // One root is prepared at a time: the next rotate-root makes one once this one is active.
      const already = newlyPrepared
        ? ''
        : root.state === 'prepared'
          ? `No new root was made: root ${root.id} was already prepared, and one is prepared at a time. It is shown below; a rotate-root once it is active prepares the next.\n\n`
          : `No new root was made: root ${root.id} (${root.state}) is shown below.\n\n`;
      io.stdout.write(already + renderAuthority(root));
    }
    return 0;
  },
};

const activate: Command = {
  name: 'activate',
  summary:
    'Activates the prepared root now (SPIRE\'s localauthority x509 activate), as its activation delay\'s end would: every datacenter gets an ' +
    'intermediate under it at once, and the replaced root stays in the bundle while anything chains to it. Agents re-sign on their usual schedule.',
  flags: [
    { name: 'id', aliases: ['authorityID'], type: 'string', valueName: 'ID', description: 'ID of the prepared root (ca show, State prepared); required' },
    ADMIN_SOCKET_FLAG,
    OUTPUT_FLAG,
  ],
  async run(args, io) {
    const id = args.requiredString('id', '(the prepared root, see ca show)');
    const res = await withAdminClient(args, io.env, (client) => client.call('Authorities', 'ActivateRoot', { id }));
    const root = fullAuthority(res.root ?? {});
    // The Authority shape rotate-root prints, so a script reads either alike.
    if (outputFormat(args) === 'json') io.stdout.write(renderJson(root));
    else {
      // A retry, or the activation delay ran out first.
      const head = res.already_active === true ? `Root ${root.id} was already active; nothing changed.` : `Root ${root.id} is active: it signs the intermediates now.`;
      io.stdout.write(`${head}\n\n${renderAuthority(root)}`);
    }
    return 0;
  },
};

/** `ca taint` (one authority by ID) and `ca revoke` (one or more, in one commit), then the journal as it stands. */
function authorityAction(
  name: string, summary: string, method: 'TaintAuthority' | 'RevokeAuthority', done: string, extraFlags: readonly FlagSpec[] = [],
): Command {
  const several = method === 'RevokeAuthority';
  return {
    name,
    summary,
    flags: [
      several
        ? { name: 'id', aliases: ['authorityID'], type: 'strings', valueName: 'ID', description: 'Authority ID from ca show; required; repeat it to revoke several together' }
        : { name: 'id', aliases: ['authorityID'], type: 'string', valueName: 'ID', description: 'Authority ID from ca show; required' },
      ...extraFlags,
      ADMIN_SOCKET_FLAG,
      OUTPUT_FLAG,
    ],
    async run(args, io) {
      // The server takes an ID given twice once; so does what is printed.
      const ids = several ? [...new Set(args.strings('id'))] : [args.requiredString('id', '(see ca show)')];
      if (ids.length === 0) throw invalidArgument('flag --id is required (see ca show)');
      const [id, ...more] = ids as [string, ...string[]];
      const res = await withAdminClient(args, io.env, (client) =>
        several
          ? client.call('Authorities', 'RevokeAuthority', { id, ...(more.length > 0 ? { ids: more } : {}), ...(args.bool('force') === true ? { force: true } : {}) })
          : client.call('Authorities', method, { id }),
      );
      io.stdout.write(renderJournal(res, outputFormat(args), `${ids.length === 1 ? `Authority ${id} is` : `Authorities ${ids.join(', ')} are`} ${done}.`));
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
  'Removes tainted roots or JWT keys from the bundle now, all in one commit; what still chains to them stops verifying. ' +
    'Refused while attested agents still chain to a root (they would need new join tokens), unless --force, and for an ' +
    'upstream CA whose PKI root stays published (naming what keeps it; tainted CAs under it are revoked together).',
  'RevokeAuthority',
  'revoked',
  [{ name: 'force', type: 'bool', description: 'Revoke a root even though attested agents still chain to it: they are cut off' }],
);

/** `meshid-server ca show|rotate-root|activate|taint|revoke`: the CA journal (admin API meshid.admin.v1.Authorities). */
export async function caCommand(argv: string[], io: CliIo): Promise<number> {
  return runGroup('meshid-server ca', 'Inspect and rotate the certificate authorities.', [show, rotateRoot, activate, taint, revoke], argv, io);
}
