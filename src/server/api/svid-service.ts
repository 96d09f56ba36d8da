import type { UntypedServiceImplementation } from '@grpc/grpc-js';
import type { Logger } from '../../common/log.js';
import { invalidArgument } from '../../common/errors.js';
import { formatDuration } from '../../common/duration.js';
import { parseSpiffeId, parseWorkloadId } from '../../common/spiffe/spiffe-id.js';
import { checkAudiences } from '../../common/jwt/audience-limits.js';
import { parseCsr } from '../../common/x509/csr.js';
import type { CaManager } from '../ca/ca-manager.js';
import { isReservedPath, RESERVED_NAMESPACE } from './entry-validation.js';
import { unary } from './handler.js';
import { unservedDatacenter } from './unserved-datacenter.js';

export interface MintLimits {
  datacenters: readonly string[];
  defaultX509SvidTtlMs: number;
  maxX509SvidTtlMs: number;
  defaultJwtSvidTtlMs: number;
  maxJwtSvidTtlMs: number;
}

/** Admin API: SVIDs minted for tooling (meshid.admin.v1.Svids). The key stays with the caller (CSR in). */
export function svidService(ca: CaManager, limits: MintLimits, log: Logger): UntypedServiceImplementation {
  const idOf = (input: string | undefined): string => {
    const id = parseWorkloadId(input ?? '', ca.trustDomain, 'spiffe_id').id;
    if (isReservedPath(parseSpiffeId(id).path)) {
      throw invalidArgument(`${id} is in the reserved ${RESERVED_NAMESPACE} namespace (server and agent identities) and cannot be minted`);
    }
    return id;
  };
  const ttlOf = (ttl: number | undefined, def: number, max: number, flag: string): number => {
    const v = Number(ttl ?? 0);
    if (!Number.isInteger(v) || v < 0) throw invalidArgument('ttl must be a whole number of seconds');
    if (v * 1000 > max) throw invalidArgument(`ttl ${formatDuration(v * 1000)} exceeds the server's ${flag} (${formatDuration(max)}): ask for less, or raise ${flag} in the server config`);
    return v === 0 ? def : v * 1000;
  };
  return {
    MintX509Svid: unary(log, 'MintX509Svid', (req: { csr?: Buffer; spiffe_id?: string; ttl?: number; dns_names?: string[]; datacenter?: string }) => {
      const spiffeId = idOf(req.spiffe_id);
      if (!req.csr || req.csr.length === 0) throw invalidArgument('csr is required');
      const { publicKey } = parseCsr(req.csr);
      const datacenter = req.datacenter || limits.datacenters[0]!;
      if (!limits.datacenters.includes(datacenter)) throw unservedDatacenter(datacenter, limits.datacenters);
      const ttlMs = ttlOf(req.ttl, limits.defaultX509SvidTtlMs, limits.maxX509SvidTtlMs, 'max_x509_svid_ttl');
      const signed = ca.signX509Svid({ datacenter, publicKey, spiffeId, dnsNames: req.dns_names ?? [], ttlMs });
      log.info({ spiffeId, datacenter }, 'X.509-SVID minted');
      return { svid_chain: signed.chain, root_cas: ca.bundle().x509Authorities, expires_at: Math.floor(signed.notAfter / 1000) };
    }),
    MintJwtSvid: unary(log, 'MintJwtSvid', (req: { spiffe_id?: string; audience?: string[]; ttl?: number }) => {
      const spiffeId = idOf(req.spiffe_id);
      const audience = req.audience ?? [];
      checkAudiences(audience);
      const ttlMs = ttlOf(req.ttl, limits.defaultJwtSvidTtlMs, limits.maxJwtSvidTtlMs, 'max_jwt_svid_ttl');
      const jwt = ca.signJwtSvid({ spiffeId, audience, ttlMs });
      log.info({ spiffeId }, 'JWT-SVID minted');
      return { token: jwt.token, expires_at: Math.floor(jwt.expiresAt / 1000) };
    }),
  };
}
