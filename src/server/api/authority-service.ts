import type { UntypedServiceImplementation } from '@grpc/grpc-js';
import type { Logger } from '../../common/log.js';
import type { CaManager } from '../ca/ca-manager.js';
import { unary } from './handler.js';

/** Admin API: the CA journal as operators see it (meshid.admin.v1.Authorities). */
export function authorityService(ca: CaManager, log: Logger): UntypedServiceImplementation {
  return {
    ListAuthorities: unary(log, 'ListAuthorities', () => ({
      trust_domain: ca.trustDomain,
      authorities: ca.listAuthorities().map((r) => ({
        id: r.id,
        kind: r.kind,
        datacenter: r.datacenter,
        state: r.state,
        not_before: Math.floor(r.notBefore / 1000),
        not_after: Math.floor(r.notAfter / 1000),
        fingerprint: ca.fingerprintOf(r.id) ?? '',
        subject: ca.subjectOf(r.id) ?? '',
      })),
    })),
  };
}
