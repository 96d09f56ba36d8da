import { randomUUID } from 'node:crypto';
import { LogThrottle } from '../../common/log-throttle.js';
import { invalidArgument, isMeshidError, permissionDenied } from '../../common/errors.js';
import { parseCsr } from '../../common/x509/csr.js';
import type { Selector } from '../../common/spiffe/selector.js';
import { trustBundleToProto } from './convert.js';
import { unary } from './handler.js';
import { reportedAgentVersion } from './agent-version.js';
import type { AgentSvid, NodeContext } from './node-context.js';
import { joinTokenFingerprint } from '../../common/join-token-fingerprint.js';

/**
 * A join token works once: the agent needs a new one, not a retry. Unknown, used and revoked tokens get this one
 * answer, so whoever holds a token learns nothing about which tokens exist.
 */
const UNKNOWN_TOKEN = 'join token is unknown, already used or revoked; generate a new one with `meshid-server token generate`';

/** The agent API's Attest: a join token, used up, for the agent's first SVID and its agent ID. */
export function attestCall(ctx: NodeContext) {
  const { deps, agentPrefix, signAgentSvid } = ctx;
  const { ds, ca, clock, log } = deps;
  const attestRefusals = new LogThrottle(clock);
  /**
   * An attestation refused for what the host presented (a join token unknown, used, expired or revoked; a bad CSR) is
   * logged at warn with the host's address: the operator hears which host waits for a token. One line per reason a
   * minute: the gate limits a source's attempts, but without this a host retrying, or probing tokens, would still
   * write a line per attempt.
   */
  const loggingAttestRefusals = <Req extends { join_token?: string }, Res>(attest: (req: Req) => Promise<Res>) =>
    async (req: Req, call: { getPeer(): string }): Promise<Res> => {
      try {
        return await attest(req);
      } catch (err) {
        if (isMeshidError(err, 'permission_denied') || isMeshidError(err, 'invalid_argument')) {
          // A permission_denied's words are the server's own; an invalid request's may quote what the caller sent.
          const admitted = attestRefusals.admit(err.code === 'permission_denied' ? err.message : err.code);
          if (admitted !== undefined) {
            const token = req.join_token ? { tokenFingerprint: joinTokenFingerprint(req.join_token) } : {};
            log.warn({ peer: call.getPeer(), code: err.code, reason: err.message, ...token, ...admitted }, 'refused to attest an agent');
          }
        }
        throw err;
      }
    };
  // Its attempts per source address were charged before the request was decoded (agent-call-gate.ts).
  return unary(log, 'Attest', loggingAttestRefusals(async (req: { join_token?: string; csr?: Buffer; agent_version?: string }) => {
    const token = req.join_token ?? '';
    if (token === '') throw invalidArgument('join_token is required');
    if (!req.csr || req.csr.length === 0) throw invalidArgument('csr is required');
    // Checked before the token is looked up: a refused version does not spend it.
    const agentVersion = reportedAgentVersion(req.agent_version);
    const record = await ds.findJoinToken(token);
    if (record === undefined) throw permissionDenied(UNKNOWN_TOKEN);
    let spiffeId: string;
    let svid: AgentSvid;
    try {
      if (record.expiresAt <= clock.now()) throw permissionDenied('join token has expired; generate a new one with `meshid-server token generate`');
      if (!deps.datacenters.includes(record.datacenter)) {
        throw permissionDenied(`join token is bound to datacenter "${record.datacenter}", which this server no longer serves`);
      }
      spiffeId = `${agentPrefix}${record.datacenter}/${randomUUID()}`;
      svid = signAgentSvid(spiffeId, record.datacenter, parseCsr(req.csr));
    } catch (err) {
      // An attempt refused for what it presented uses the token up, so a leaked token cannot be probed again and
      // again; one the server failed (its CA, its disk) leaves it for the retry.
      if (isMeshidError(err, 'permission_denied') || isMeshidError(err, 'invalid_argument')) {
        // The refusal is the answer: a token that cannot be used up now (a full disk) is not the caller's problem.
        await ds.consumeJoinToken(token).catch((consumeErr: unknown) => log.warn({ err: consumeErr }, 'cannot use up a refused join token'));
      }
      throw err;
    }
    const selectors: Selector[] = [
      { type: 'meshid', value: `datacenter:${record.datacenter}` },
      ...record.selectors,
    ];
    const now = clock.now();
    const agent = {
      spiffeId,
      datacenter: record.datacenter,
      selectors,
      certSerial: svid.serial,
      certNotAfter: svid.notAfter,
      certIssuerId: svid.issuerId,
      attestedAt: now,
      updatedAt: now,
      banned: false,
      ...(agentVersion !== undefined && { agentVersion }),
    };
    // The token is consumed in the agent's own transaction: a write that fails (a full disk) leaves it usable.
    await ds.createAgent(agent, { joinToken: token }).catch((err: unknown) => {
      throw isMeshidError(err, 'not_found') ? permissionDenied(UNKNOWN_TOKEN) : err;
    });
    log.info(
      { agent: spiffeId, datacenter: record.datacenter, tokenFingerprint: joinTokenFingerprint(token), ...(agentVersion !== undefined && { agentVersion }) },
      'agent attested with a join token',
    );
    return { spiffe_id: spiffeId, svid_chain: svid.chain, bundle: trustBundleToProto(ca.bundle()), datacenter: record.datacenter };
  }));
}
