import type { UntypedServiceImplementation } from '@grpc/grpc-js';
import type { Clock } from '../../common/clock.js';
import type { Logger } from '../../common/log.js';
import type { CaManager } from '../ca/ca-manager.js';
import { parseCertificate } from '../../common/x509/certificate.js';
import type { CaRecord, RevokedJwtKeyRecord, RevokedRootRecord } from '../ca/ca-journal.js';
import { agentsCutOffByRevoking, revokeBeforePartnersPolled, revokeWouldCutOff } from '../ca/root-revoke-guard.js';
import type { Datastore } from '../datastore/datastore.js';
import { invalidArgument } from '../../common/errors.js';
import { unary } from './handler.js';

/**
 * Admin API: the CA journal as operators see it (meshid.admin.v1.Authorities). `partnersPollEveryMs`: the bundle
 * endpoint's refresh hint when federation partners authenticate it by the server's SVID (revokeBeforePartnersPolled).
 */
export function authorityService(
  ca: CaManager, ds: Pick<Datastore, 'listAgents'>, clock: Clock, log: Logger, partnersPollEveryMs?: number,
): UntypedServiceImplementation {
  const toProto = (r: CaRecord) => ({
    id: r.id,
    kind: r.kind,
    datacenter: r.datacenter,
    state: r.state,
    not_before: Math.floor(r.notBefore / 1000),
    not_after: Math.floor(r.notAfter / 1000),
    fingerprint: ca.fingerprintOf(r.id) ?? '',
    subject: ca.subjectOf(r.id) ?? '',
    upstream_ca: ca.isUpstreamCa(r.id),
    // Rounded up: the root is not active before the second printed.
    activates_at: Math.ceil((ca.rootActivatesAt(r.id) ?? 0) / 1000),
  });
  const revokedToProto = (r: RevokedRootRecord) => ({
    id: r.id,
    subject: r.subject,
    fingerprint: r.certFingerprint,
    revoked_at: Math.floor(r.revokedAt / 1000),
    anchors: r.anchorsDer.map((der) => {
      const cert = parseCertificate(der);
      return { subject: cert.subject, fingerprint: cert.fingerprintSha256 };
    }),
  });
  const revokedJwtKeyToProto = (k: RevokedJwtKeyRecord) => ({ id: k.id, key_id: k.keyId, revoked_at: Math.floor(k.revokedAt / 1000) });
  // Taint and revoke answer with the journal as ListAuthorities shows it, revoked roots and JWT keys included:
  // `ca revoke` prints the authority it took out there.
  const list = () => ({
    trust_domain: ca.trustDomain,
    authorities: ca.listAuthorities().map(toProto),
    revoked_roots: ca.listRevokedRoots().map(revokedToProto),
    revoked_jwt_keys: ca.listRevokedJwtKeys().map(revokedJwtKeyToProto),
  });
  return {
    ListAuthorities: unary(log, 'ListAuthorities', list),
    RotateRoot: unary(log, 'RotateRoot', async () => {
      const { root, newlyPrepared } = await ca.requestRootRotation();
      if (newlyPrepared) log.info({ authority: root.id, newlyPrepared }, 'root rotation requested: a new root was prepared');
      else log.info({ authority: root.id, newlyPrepared }, 'root rotation requested: a root was already prepared, so no new one was made; it is returned');
      return { ...toProto(root), newly_prepared: newlyPrepared };
    }),
    ActivateRoot: unary(log, 'ActivateRoot', async (req: { id?: string }) => {
      if (!req.id) throw invalidArgument('id of the prepared root to activate is required (ca show, State prepared)');
      const { root, alreadyActive } = await ca.activateRoot(req.id);
      if (alreadyActive) log.info({ authority: root.id }, 'root activation requested: the root was already active, nothing changed');
      else log.info({ authority: root.id }, 'root activated: it signs a new intermediate for every datacenter now');
      return { root: toProto(root), already_active: alreadyActive };
    }),
    TaintAuthority: unary(log, 'TaintAuthority', async (req: { id?: string }) => {
      if (!req.id) throw invalidArgument('id of the authority to taint is required (see ca show)');
      await ca.taint(req.id);
      log.warn({ authority: req.id }, 'authority tainted');
      return list();
    }),
    RevokeAuthority: unary(log, 'RevokeAuthority', async (req: { id?: string; ids?: string[]; force?: boolean }) => {
      // One commit for all: roots under one upstream PKI root take it out of the bundle only together.
      const ids = [...new Set([...(req.id ? [req.id] : []), ...(req.ids ?? [])])];
      if (ids.length === 0 || ids.some((id) => id === '')) throw invalidArgument('id of the authority to revoke is required (see ca show)');
      await ca.revoke(ids, async (intermediatesUnder, rootIds) => {
        const cutOff = agentsCutOffByRevoking(await ds.listAgents(), intermediatesUnder, clock.now());
        if (cutOff.length > 0 && req.force !== true) throw revokeWouldCutOff(rootIds, cutOff);
        const activeRoot = ca.listAuthorities().find((r) => r.kind === 'root' && r.state === 'active' && !rootIds.includes(r.id));
        const partners = revokeBeforePartnersPolled(rootIds, activeRoot, partnersPollEveryMs, clock.now());
        if (partners !== undefined && req.force !== true) throw partners;
        if (cutOff.length > 0) log.warn({ authorities: ids, agents: cutOff.length }, 'revoking with --force: the agents still on these roots are cut off');
        if (partners !== undefined) {
          log.warn(
            { authorities: ids, activeRoot: activeRoot!.id },
            "revoking with --force within one refresh hint of the active root's publication: federation partners that have not polled since must be re-seeded",
          );
        }
      });
      log.warn({ authorities: ids }, ids.length === 1 ? 'authority revoked' : 'authorities revoked together');
      return list();
    }),
  };
}
