import type { UntypedServiceImplementation } from '@grpc/grpc-js';
import type { Clock } from '../../common/clock.js';
import type { Logger } from '../../common/log.js';
import type { CaManager } from '../ca/ca-manager.js';
import type { CaRecord } from '../ca/ca-journal.js';
import { agentsCutOffByRevoking, revokeWouldCutOff } from '../ca/root-revoke-guard.js';
import type { Datastore } from '../datastore/datastore.js';
import { invalidArgument } from '../../common/errors.js';
import { unary } from './handler.js';

/** Admin API: the CA journal as operators see it (meshid.admin.v1.Authorities). */
export function authorityService(ca: CaManager, ds: Pick<Datastore, 'listAgents'>, clock: Clock, log: Logger): UntypedServiceImplementation {
  const toProto = (r: CaRecord) => ({
    id: r.id,
    kind: r.kind,
    datacenter: r.datacenter,
    state: r.state,
    not_before: Math.floor(r.notBefore / 1000),
    not_after: Math.floor(r.notAfter / 1000),
    fingerprint: ca.fingerprintOf(r.id) ?? '',
    subject: ca.subjectOf(r.id) ?? '',
  });
  const list = () => ({ trust_domain: ca.trustDomain, authorities: ca.listAuthorities().map(toProto) });
  return {
    ListAuthorities: unary(log, 'ListAuthorities', list),
    RotateRoot: unary(log, 'RotateRoot', async () => {
      const root = await ca.rotateRoot();
      log.info({ authority: root.id }, 'root rotation requested');
      return toProto(root);
    }),
    TaintAuthority: unary(log, 'TaintAuthority', async (req: { id?: string }) => {
      if (!req.id) throw invalidArgument('id of the authority to taint is required (see ca show)');
      await ca.taint(req.id);
      log.warn({ authority: req.id }, 'authority tainted');
      return list();
    }),
    RevokeAuthority: unary(log, 'RevokeAuthority', async (req: { id?: string; force?: boolean }) => {
      if (!req.id) throw invalidArgument('id of the authority to revoke is required (see ca show)');
      const id = req.id;
      await ca.revoke(id, async (intermediatesUnder) => {
        const cutOff = agentsCutOffByRevoking(await ds.listAgents(), intermediatesUnder, clock.now());
        if (cutOff.length > 0 && req.force !== true) throw revokeWouldCutOff(id, cutOff);
        if (cutOff.length > 0) log.warn({ authority: id, agents: cutOff.length }, 'revoking a root with --force: the agents still on it are cut off');
      });
      log.warn({ authority: req.id }, 'authority revoked');
      return list();
    }),
  };
}
