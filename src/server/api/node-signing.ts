import { budgetSpent, invalidArgument, permissionDenied } from '../../common/errors.js';
import { toServiceError } from '../../common/grpc-status.js';
import { readCsr, type UnverifiedCsr } from '../../common/x509/csr.js';
import { checkAudiences } from '../../common/jwt/audience-limits.js';
import { MAX_X509_SVIDS_PER_CALL } from '../../common/grpc/repeated-limits.js';
import { isServerFault, logServerFault, unary } from './handler.js';
import type { NodeContext } from './node-context.js';

/**
 * The signing budget (SigningLimits) is spent: RESOURCE_EXHAUSTED with a retry hint, not UNAVAILABLE, so an agent can
 * tell a wait of a few seconds from an outage and hold a workload's first message for the SVIDs it lacks.
 */
function signingRefused(waitMs: number): Error {
  return budgetSpent('signing rate limit reached', waitMs);
}

function isUnverifiedCsr(value: unknown): value is UnverifiedCsr {
  return typeof value === 'object' && value !== null && 'verifySignature' in value;
}

/**
 * An entry's TTL as signed today: 0 is the server's current default; a TTL above today's maximum (lowered since the
 * entry was written) is the maximum, since intermediates and JWT keys are sized to cover only that.
 */
function signedTtlMs(entrySeconds: number, defaultMs: number, maxMs: number): number {
  return entrySeconds === 0 ? defaultMs : Math.min(entrySeconds * 1000, maxMs);
}

/** The agent API's Renew: the agent's next SVID, for the agent ID it authenticated with. */
export function renewCall(ctx: NodeContext) {
  const { deps, copiedIdentities, auth, signAgentSvid } = ctx;
  const { ds, budgets, log } = deps;
  return unary(log, 'Renew', async (req: { csr?: Buffer }, call) => {
    const agent = await auth(call);
    if (!req.csr || req.csr.length === 0) throw invalidArgument('csr is required');
    // The renewal budget was charged before the request was decoded (agent-call-gate.ts). A renewal is a signing
    // like any other: it counts against the agent's signing rate. Refused there, it is not a renewal made: its
    // renewal token goes back.
    const signingRefusedRenewal = (waitMs: number): Error => {
      budgets.refundRenewal(agent.spiffeId);
      return signingRefused(waitMs);
    };
    const wait = deps.limiter.admit(agent.spiffeId, 1);
    if (wait > 0) throw signingRefusedRenewal(wait);
    const csr = readCsr(req.csr);
    const keyWait = deps.limiter.admitKeys(agent.spiffeId, [csr.publicKey], 1);
    if (keyWait > 0) throw signingRefusedRenewal(keyWait);
    csr.verifySignature();
    const svid = signAgentSvid(agent.spiffeId, agent.datacenter, csr);
    await ds.updateAgentCert(agent.spiffeId, svid.serial, svid.notAfter, agent.presentedSerial, svid.issuerId);
    copiedIdentities.renewed(agent.spiffeId, agent.presentedSerial, call.getPeer());
    log.debug({ agent: agent.spiffeId, serial: svid.serial, notAfter: new Date(svid.notAfter).toISOString() }, 'agent SVID renewed');
    return { svid_chain: svid.chain };
  });
}

/** The agent API's SignX509Svids: X509-SVIDs for entries authorized for the calling agent, one result per CSR. */
export function signX509SvidsCall(ctx: NodeContext) {
  const { deps, auth, authorized } = ctx;
  const { ca, log } = deps;
  return unary(log, 'SignX509Svids', async (req: { items?: Array<{ entry_id?: string; csr?: Buffer }> }, call) => {
    const agent = await auth(call);
    const items = req.items ?? [];
    // Also refused before decoding (repeated-limits.ts); kept for a request that reaches here another way.
    if (items.length > MAX_X509_SVIDS_PER_CALL) throw invalidArgument(`at most ${MAX_X509_SVIDS_PER_CALL} CSRs per call`);
    const wait = deps.limiter.admit(agent.spiffeId, Math.max(1, items.length));
    if (wait > 0) throw signingRefused(wait);
    const entries = authorized(agent);
    const csrs = items.map((item): unknown => {
      try {
        if (!entries.has(item.entry_id ?? '')) return undefined;
        return readCsr(item.csr ?? Buffer.alloc(0));
      } catch (err) {
        return err;
      }
    });
    const keys = csrs.filter(isUnverifiedCsr).map((csr) => csr.publicKey);
    const keyWait = deps.limiter.admitKeys(agent.spiffeId, keys, Math.max(1, items.length));
    if (keyWait > 0) throw signingRefused(keyWait);
    return {
      results: items.map((item, i) => {
        const entryId = item.entry_id ?? '';
        try {
          const entry = entries.get(entryId);
          if (entry === undefined) throw permissionDenied(`entry ${entryId} is not authorized for this agent`);
          const csr = csrs[i];
          if (!isUnverifiedCsr(csr)) throw csr;
          csr.verifySignature();
          const signed = ca.signX509Svid({
            datacenter: agent.datacenter,
            publicKey: csr.publicKey,
            spiffeId: entry.spiffeId,
            dnsNames: entry.dnsNames,
            ttlMs: signedTtlMs(entry.x509SvidTtlSeconds, deps.ttls.defaultX509SvidTtlMs, deps.ttls.maxX509SvidTtlMs),
          });
          return { entry_id: entryId, code: 0, message: '', svid_chain: signed.chain, expires_at: Math.floor(signed.notAfter / 1000) };
        } catch (err) {
          // The call answers OK with this item failed, so unary() never sees a fault of the server's: logged here,
          // throttled as unary() throttles, since a fault that fails one item of a batch usually fails them all.
          if (isServerFault(err)) logServerFault(log, 'SignX509Svids', err, { agent: agent.spiffeId, entryId });
          const e = toServiceError(err);
          return { entry_id: entryId, code: e.code, message: e.details, svid_chain: [], expires_at: 0 };
        }
      }),
    };
  });
}

/** The agent API's SignJwtSvid: a JWT-SVID for an entry authorized for the calling agent. */
export function signJwtSvidCall(ctx: NodeContext) {
  const { deps, auth, authorized } = ctx;
  const { ca, log } = deps;
  return unary(log, 'SignJwtSvid', async (req: { entry_id?: string; audience?: string[] }, call) => {
    const agent = await auth(call);
    const audience = req.audience ?? [];
    checkAudiences(audience);
    const wait = deps.limiter.admit(agent.spiffeId, 1);
    if (wait > 0) throw signingRefused(wait);
    const entry = authorized(agent).get(req.entry_id ?? '');
    if (entry === undefined) throw permissionDenied(`entry ${req.entry_id ?? ''} is not authorized for this agent`);
    const jwt = ca.signJwtSvid({ spiffeId: entry.spiffeId, audience, ttlMs: signedTtlMs(entry.jwtSvidTtlSeconds, deps.ttls.defaultJwtSvidTtlMs, deps.ttls.maxJwtSvidTtlMs) });
    return { token: jwt.token, expires_at: Math.floor(jwt.expiresAt / 1000), issued_at: Math.floor(jwt.issuedAt / 1000) };
  });
}
