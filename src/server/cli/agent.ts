import type { FlagSpec, ParsedArgs } from '../../common/cli/args.js';
import { runGroup, type Command } from '../../common/cli/command.js';
import { errorLine, OUTPUT_FLAG, outputFormat, renderFields, renderJson, type CliIo } from '../../common/cli/output.js';
import { ADMIN_SOCKET_FLAG, withAdminClient } from './admin-client.js';
import type { ProtoAgent } from './admin-types.js';
import { isoTime } from './entry-output.js';
import { listAll } from './entry.js';
import { orphanedEntriesNotice } from '../entries/orphaned-entries.js';
import { checkDate, checkSelectors, checkSpiffeId, datacenterFlag, selectorFlag, spiffeIdFlag } from './flags.js';
import { invalidArgument } from '../../common/errors.js';
import type { SelectorMatch } from '../datastore/datastore.js';
import { JOIN_TOKEN_ATTESTATION, spireAgent } from './spire-output.js';

/** One attested agent as a `Label : value` block. */
export function renderAgent(a: ProtoAgent): string {
  return renderFields([
    ['SPIFFE ID', a.spiffe_id ?? ''],
    ['Datacenter', a.datacenter ?? ''],
    ['Attested at', isoTime(a.attested_at)],
    ['Expiration time', isoTime(a.cert_expires_at)],
    ['Serial number', a.cert_serial || undefined],
    ['Signed by', a.cert_issuer_id || undefined],
    ['Banned', a.banned === true],
    // As spire-server: only once the agent has reported one (agents of earlier versions do not).
    ['Agent version', a.agent_version || undefined],
    ['Selector', (a.selectors ?? []).map((s) => `${s.type}:${s.value}`)],
  ]);
}

function selectorKey(s: { type?: string; value?: string }): string {
  return `${s.type ?? ''}:${s.value ?? ''}`;
}

/**
 * An agent's selectors against the given ones, as `entry show --match` (and spire-server's -matchSelectorsOn) filters
 * entries: superset holds every given one, exact the same set, subset at least one and none other, any one in common.
 */
function selectorsMatch(held: readonly string[], given: readonly string[], match: SelectorMatch): boolean {
  const has = new Set(held);
  const wanted = new Set(given);
  switch (match) {
    case 'superset':
      return [...wanted].every((s) => has.has(s));
    case 'exact':
      return has.size === wanted.size && [...wanted].every((s) => has.has(s));
    case 'subset':
      return has.size > 0 && [...has].every((s) => wanted.has(s));
    case 'any':
      return [...wanted].some((s) => has.has(s));
  }
}


/** The filters `agent list` and `agent count` share (spire-server's). */
const FILTER_FLAGS: readonly FlagSpec[] = [
  datacenterFlag('Only agents of this datacenter: a configured one, or one taken out of the config whose agents are still listed'),
  { name: 'banned', type: 'string', choices: ['true', 'false'], description: 'true: only banned agents; false: only agents not banned' },
  {
    name: 'expires-before', aliases: ['expiresBefore'], type: 'string', valueName: 'DATE',
    description: 'Only agents whose SVID expires before DATE: 2026-05-01T12:00:00Z, or spire-server\'s "2026-05-01 12:00:00 +0000 +00"',
  },
  { name: 'attestation-type', aliases: ['attestationType'], type: 'string', valueName: 'TYPE', description: `Only agents attested this way; every meshid agent attests with ${JOIN_TOKEN_ATTESTATION}` },
  {
    name: 'can-reattest', aliases: ['canReattest'], type: 'string', choices: ['true', 'false'],
    description: 'true: only agents that can attest again by themselves (none: a join token is spent once, as SPIRE\'s join_token agents); false: every agent',
  },
  selectorFlag('Only agents matching these selectors (see --match): meshid:datacenter:<dc>, and those of their join token'),
  { name: 'match', aliases: ['matchSelectorsOn'], type: 'string', choices: ['exact', 'subset', 'superset', 'any'], description: 'How --selector filters: exact, subset, superset or any; default superset = agents holding every given selector' },
];

/** The attested agents the filter flags select. */
async function filteredAgents(args: ParsedArgs, io: CliIo): Promise<ProtoAgent[]> {
  const datacenter = args.string('datacenter');
  const banned = args.string('banned');
  const expiresBefore = args.string('expires-before');
  const beforeMs = expiresBefore === undefined ? undefined : checkDate(expiresBefore, '--expires-before');
  const attestationType = args.string('attestation-type');
  const canReattest = args.string('can-reattest');
  const selectors = checkSelectors(args.strings('selector')).map(selectorKey);
  if (selectors.length === 0 && args.has('match')) throw invalidArgument('--match needs at least one --selector');
  const match = (args.string('match') ?? 'superset') as SelectorMatch;
  const res = await withAdminClient(args, io.env, (client) => client.call('Agents', 'ListAgents', datacenter ? { datacenter } : {}));
  // Filtered here: ListAgents answers every agent in one message (the datastore filters by datacenter only), so the
  // server would filter the same list in memory; here no API change is needed. As spire-server: strictly before.
  return (res.agents ?? []).filter(
    (a) =>
      (banned === undefined || (a.banned === true) === (banned === 'true')) &&
      (beforeMs === undefined || (a.cert_expires_at ?? 0) * 1000 < beforeMs) &&
      (attestationType === undefined || attestationType === JOIN_TOKEN_ATTESTATION) &&
      canReattest !== 'true' &&
      (selectors.length === 0 || selectorsMatch((a.selectors ?? []).map(selectorKey), selectors, match)),
  );
}

const list: Command = {
  name: 'list',
  summary: 'Lists attested agents.',
  flags: [...FILTER_FLAGS, ADMIN_SOCKET_FLAG, OUTPUT_FLAG],
  async run(args, io) {
    const agents = await filteredAgents(args, io);
    // spire-server's ListAgentsResponse, every page in one.
    if (outputFormat(args) === 'json') io.stdout.write(renderJson({ agents: agents.map(spireAgent), next_page_token: '' }));
    else {
      const head = `Found ${agents.length} attested ${agents.length === 1 ? 'agent' : 'agents'}\n`;
      io.stdout.write(head + agents.map((a) => `\n${renderAgent(a)}`).join(''));
    }
    return 0;
  },
};

/** `agent count`: how many agents `agent list` with the same filters lists, as spire-server prints it. */
const count: Command = {
  name: 'count',
  summary: 'Counts the attested agents that match the filters.',
  flags: [...FILTER_FLAGS, ADMIN_SOCKET_FLAG, OUTPUT_FLAG],
  async run(args, io) {
    const n = (await filteredAgents(args, io)).length;
    io.stdout.write(outputFormat(args) === 'json' ? renderJson({ count: n }) : `${n} attested ${n === 1 ? 'agent' : 'agents'}\n`);
    return 0;
  },
};

/** show, evict and ban share their shape: one agent by SPIFFE ID in, the agent out. */
function byId(name: 'show' | 'evict' | 'ban', method: 'GetAgent' | 'EvictAgent' | 'BanAgent', summary: string, done: string): Command {
  return {
    name,
    summary,
    flags: [spiffeIdFlag('SPIFFE ID of the agent; required'), ADMIN_SOCKET_FLAG, OUTPUT_FLAG],
    async run(args, io) {
      const spiffeId = checkSpiffeId(args.requiredString('spiffe-id'), 'SPIFFE ID');
      const { agent, parented } = await withAdminClient(args, io.env, async (client) => {
        const agent = await client.call('Agents', method, { spiffe_id: spiffeId });
        if (name === 'show') return { agent, parented: 0 };
        // Once the agent is gone, not before. Best effort: the agent is evicted or banned whatever this count does.
        try {
          return { agent, parented: (await listAll(client, { parent_id: agent.spiffe_id ?? spiffeId })).length };
        } catch (err) {
          io.stderr.write(`Warning: the entries parented to ${spiffeId} could not be counted: ${errorLine(err).replace(/^Error: /, '')}\n`);
          return { agent, parented: 0 };
        }
      });
      // spire-server prints GetAgent's Agent for show, and DeleteAgent's and BanAgent's google.protobuf.Empty: {}.
      if (outputFormat(args) === 'json') io.stdout.write(renderJson(name === 'show' ? spireAgent(agent) : {}));
      else io.stdout.write(done === '' ? renderAgent(agent) : `${done}\n`);
      // On stderr, so --output json stays one document; the command still succeeded.
      if (name !== 'show' && parented > 0) {
        io.stderr.write(`Warning: ${orphanedEntriesNotice(agent.spiffe_id ?? spiffeId, parented, name === 'evict' ? 'evicted' : 'banned')}\n`);
      }
      return 0;
    },
  };
}

export const AGENT_COMMANDS: readonly Command[] = [
  list,
  count,
  byId('show', 'GetAgent', 'Shows one attested agent.', ''),
  byId('evict', 'EvictAgent', 'Evicts an agent: it must attest again (with a new join token); until then it serves what it has cached until that expires.', 'Agent evicted successfully'),
  byId('ban', 'BanAgent', 'Bans an agent: its SVID is refused from now on, it stops serving every workload, and it cannot attest again under this ID.', 'Agent banned successfully'),
];

/** `meshid-server agent list|count|show|evict|ban`: attested agents (admin API meshid.admin.v1.Agents). */
export async function agentCommand(argv: string[], io: CliIo): Promise<number> {
  return runGroup('meshid-server agent', 'Manage attested agents.', AGENT_COMMANDS, argv, io, {
    purge: 'meshid-server removes an agent once its agent SVID has expired (housekeeping, about once a minute): `agent list` shows those left',
  });
}
