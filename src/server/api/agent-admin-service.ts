import type { UntypedServiceImplementation } from '@grpc/grpc-js';
import type { Logger } from '../../common/log.js';
import { invalidArgument, notFound } from '../../common/errors.js';
import { parseSpiffeId } from '../../common/spiffe/spiffe-id.js';
import type { Datastore } from '../datastore/datastore.js';
import { agentToProto } from './convert.js';
import { unary } from './handler.js';
import { unservedDatacenter } from './unserved-datacenter.js';

/** Admin API: attested agents (meshid.admin.v1.Agents). Evict forces re-attestation; ban refuses the agent for good. */
export function agentAdminService(ds: Datastore, opts: { datacenters: readonly string[] }, log: Logger): UntypedServiceImplementation {
  const idOf = (req: { spiffe_id?: string }): string => {
    if (!req.spiffe_id) throw invalidArgument('spiffe_id of the agent is required');
    return parseSpiffeId(req.spiffe_id).id;
  };
  const get = async (id: string) => {
    const a = await ds.getAgent(id);
    if (a === undefined) throw notFound(`agent ${id} not found`);
    return a;
  };
  return {
    ListAgents: unary(log, 'ListAgents', async (req: { datacenter?: string }) => {
      const listed = await ds.listAgents(req.datacenter ? { datacenter: req.datacenter } : {});
      // A misspelt name would list nothing, which reads as "no agents there". A datacenter taken out of the config
      // still has its agents until their SVIDs expire, and the operator must find them to evict or ban them.
      if (req.datacenter && listed.length === 0 && !opts.datacenters.includes(req.datacenter)) {
        throw unservedDatacenter(req.datacenter, opts.datacenters);
      }
      return { agents: listed.map(agentToProto) };
    }),
    GetAgent: unary(log, 'GetAgent', async (req: { spiffe_id?: string }) => agentToProto(await get(idOf(req)))),
    EvictAgent: unary(log, 'EvictAgent', async (req: { spiffe_id?: string }) => {
      const agent = await get(idOf(req));
      await ds.evictAgent(agent.spiffeId);
      log.info({ agent: agent.spiffeId }, 'agent evicted');
      return agentToProto(agent);
    }),
    BanAgent: unary(log, 'BanAgent', async (req: { spiffe_id?: string }) => {
      const agent = await get(idOf(req));
      await ds.banAgent(agent.spiffeId);
      log.info({ agent: agent.spiffeId }, 'agent banned');
      return agentToProto({ ...agent, banned: true });
    }),
  };
}
