import { invalidArgument } from '../../common/errors.js';
import { MAX_SECONDS_FLAG_MS, type FlagSpec, type ParsedArgs } from '../../common/cli/args.js';
import type { ListEntriesRequest, ProtoEntry } from './admin-types.js';
import { checkSelectors, checkSpiffeId, checkTrustDomain, parentIdFlag, selectorFlag, spiffeIdFlag } from './flags.js';

/**
 * The entry commands' flags and what they become: the fields create and update set (and update's mask), and the
 * filters show and count send, each checked locally before the admin socket is asked.
 */

/** The entry fields a flag sets, and the name of that field in UpdateEntry's mask (meshid.v1.Entry field names). */
export const FIELD_FLAGS: readonly FlagSpec[] = [
  {
    name: 'x509-svid-ttl', aliases: ['x509SVIDTTL', 'ttl'], type: 'duration', zeroAllowed: true, maxMs: MAX_SECONDS_FLAG_MS,
    description: 'TTL of the X509-SVIDs issued for this entry, in seconds or like 1h, 24h; 0 or absent: the server default',
  },
  { name: 'jwt-svid-ttl', aliases: ['jwtSVIDTTL'], type: 'duration', zeroAllowed: true, maxMs: MAX_SECONDS_FLAG_MS, description: 'TTL of the JWT-SVIDs issued for this entry; 0 or absent: the server default' },
  { name: 'dns', aliases: ['dnsName'], type: 'strings', valueName: 'NAME', emptyClears: true, description: 'DNS name for the X509-SVID (--dns "" alone: none)' },
  { name: 'hint', type: 'string', emptyClears: true, description: 'Hint that tells a workload which of its identities to use (--hint "": none)' },
  {
    name: 'federates-with', aliases: ['federatesWith'], type: 'strings', valueName: 'TD', emptyClears: true,
    description: 'Trust domain whose bundle the workload also receives (--federates-with "" alone: none)',
  },
  { name: 'admin', type: 'bool', description: "Recorded as SPIRE's -admin; meshid does not act on it (its admin API is the local socket only)" },
  { name: 'downstream', type: 'bool', description: "Recorded as SPIRE's -downstream; meshid does not act on it (no nested servers)" },
];

/**
 * update's field flags: the same, but a TTL flag left out keeps the entry's TTL (update changes only what is given),
 * so its help cannot say that absent means the server default, as create's does.
 */
export const UPDATE_FIELD_FLAGS: readonly FlagSpec[] = FIELD_FLAGS.map((flag) =>
  flag.name === 'x509-svid-ttl' || flag.name === 'jwt-svid-ttl'
    ? { ...flag, description: flag.description.replace('0 or absent: the server default', '0: the server default; absent: unchanged') }
    : flag,
);

export const MASK_OF_FLAG: Readonly<Record<string, string>> = {
  'spiffe-id': 'spiffe_id',
  'parent-id': 'parent_id',
  selector: 'selectors',
  'x509-svid-ttl': 'x509_svid_ttl',
  'jwt-svid-ttl': 'jwt_svid_ttl',
  dns: 'dns_names',
  hint: 'hint',
  'federates-with': 'federates_with',
  admin: 'admin',
  downstream: 'downstream',
};

/** Reads the entry fields given on the command line, checked locally; flags not given stay undefined. */
export function entryFields(args: ParsedArgs): ProtoEntry {
  const e: ProtoEntry = {};
  const spiffeId = args.string('spiffe-id');
  if (spiffeId !== undefined) e.spiffe_id = checkSpiffeId(spiffeId, 'SPIFFE ID');
  const parentId = args.string('parent-id');
  if (parentId !== undefined) e.parent_id = checkSpiffeId(parentId, 'Parent ID');
  if (args.has('selector')) e.selectors = checkSelectors(args.strings('selector'));
  const x509 = args.seconds('x509-svid-ttl');
  if (x509 !== undefined) e.x509_svid_ttl = x509;
  const jwt = args.seconds('jwt-svid-ttl');
  if (jwt !== undefined) e.jwt_svid_ttl = jwt;
  if (args.has('dns')) e.dns_names = args.strings('dns');
  const hint = args.string('hint');
  if (hint !== undefined) e.hint = hint;
  if (args.has('federates-with')) e.federates_with = args.strings('federates-with').map(checkTrustDomain);
  const admin = args.bool('admin');
  if (admin !== undefined) e.admin = admin;
  const downstream = args.bool('downstream');
  if (downstream !== undefined) e.downstream = downstream;
  return e;
}

/** The filters `entry show` and `entry count` share (spire-server's). */
export const FILTER_FLAGS: readonly FlagSpec[] = [
  spiffeIdFlag('Only entries with this SPIFFE ID'),
  parentIdFlag('Only entries with this parent ID'),
  selectorFlag('Only entries matching these selectors (see --match)'),
  { name: 'match', aliases: ['matchSelectorsOn'], type: 'string', choices: ['exact', 'subset', 'superset', 'any'], description: 'How --selector filters: exact, subset, superset or any; default superset = entries holding every given selector' },
  { name: 'federates-with', aliases: ['federatesWith'], type: 'strings', valueName: 'TD', description: 'Only entries federating with these trust domains (see --match-federates-with)' },
  {
    name: 'match-federates-with', aliases: ['matchFederatesWithOn'], type: 'string', choices: ['exact', 'subset', 'superset', 'any'],
    description: 'How --federates-with filters; default superset = entries federating with every one given',
  },
  { name: 'hint', type: 'string', description: 'Only entries with this hint' },
  // Without it every entry is listed: spire-server's show and count then leave downstream entries out, which hides them.
  { name: 'downstream', type: 'bool', description: 'Only entries marked downstream' },
];

export function listRequest(args: ParsedArgs): ListEntriesRequest {
  const req: ListEntriesRequest = {};
  const spiffeId = args.string('spiffe-id');
  if (spiffeId !== undefined) req.spiffe_id = checkSpiffeId(spiffeId, 'SPIFFE ID');
  const parentId = args.string('parent-id');
  if (parentId !== undefined) req.parent_id = checkSpiffeId(parentId, 'Parent ID');
  const selectors = checkSelectors(args.strings('selector'));
  if (selectors.length > 0) {
    req.selectors = selectors;
    req.selector_match = args.string('match') ?? 'superset';
  } else if (args.has('match')) {
    throw invalidArgument('--match needs at least one --selector');
  }
  const tds = args.strings('federates-with').map(checkTrustDomain);
  if (tds.length > 0) {
    req.federates_with_list = tds;
    req.federates_with_match = args.string('match-federates-with') ?? 'superset';
  } else if (args.has('match-federates-with')) {
    throw invalidArgument('--match-federates-with needs at least one --federates-with');
  }
  const hint = args.string('hint');
  if (hint !== undefined) req.hint = hint;
  if (args.bool('downstream') === true) req.downstream = true;
  return req;
}
