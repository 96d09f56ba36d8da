import { randomUUID } from 'node:crypto';
import { type ServerWritableStream, type UntypedServiceImplementation } from '@grpc/grpc-js';
import type { Clock } from '../../common/clock.js';
import type { Logger } from '../../common/log.js';
import { LogThrottle } from '../../common/log-throttle.js';
import { budgetSpent, invalidArgument, isMeshidError, MeshidError, permissionDenied, unavailable } from '../../common/errors.js';
import { toServiceError } from '../../common/grpc-status.js';
import { parseCsr, readCsr, type ParsedCsr, type UnverifiedCsr } from '../../common/x509/csr.js';
import { checkAudiences } from '../../common/jwt/audience-limits.js';
import { MAX_X509_SVIDS_PER_CALL } from '../../common/grpc/repeated-limits.js';
import { parseCertificate } from '../../common/x509/certificate.js';
import type { Selector } from '../../common/spiffe/selector.js';
import type { CaManager } from '../ca/ca-manager.js';
import type { AttestedAgent, Datastore, RegistrationEntry } from '../datastore/datastore.js';
import { AuthorizedSets } from '../entries/authorized-sets.js';
import { authenticateAgent, bannedRefusal, notCurrentSvid, REATTEST_PREFIX, svidExpired, svidNotAnchored, type AuthenticatedAgent } from './agent-auth.js';
import type { AgentCallBudgets } from './agent-call-budgets.js';
import type { AgentSvidAnchor } from './agent-svid-anchor.js';
import { CopiedAgentIdentities } from './copied-agent-identities.js';
import type { PresentedCertificates } from './presented-certificates.js';
import { entryToProto, trustBundleToProto } from './convert.js';
import { isServerFault, logServerFault, unary } from './handler.js';
import { AgentVersionRecorder, reportedAgentVersion } from './agent-version.js';
import type { SigningLimits } from './signing-limits.js';
import type { HubEvent, SyncHub } from './sync-hub.js';
import { SentEntries, type KnownEntries } from './sent-entries.js';
import type { ProtoBundle, ProtoEntry } from './proto-types.js';
import { joinTokenFingerprint } from '../../common/join-token-fingerprint.js';

/**
 * A join token works once: the agent needs a new one, not a retry. Unknown, used and revoked tokens get this one
 * answer, so whoever holds a token learns nothing about which tokens exist.
 */
const UNKNOWN_TOKEN = 'join token is unknown, already used or revoked; generate a new one with `meshid-server token generate`';

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

export interface NodeServiceDeps {
  trustDomain: string;
  datacenters: readonly string[];
  agentSvidTtlMs: number;
  /** The server's current defaults and limits, applied to entries when signing (signedTtlMs). */
  ttls: { defaultX509SvidTtlMs: number; maxX509SvidTtlMs: number; defaultJwtSvidTtlMs: number; maxJwtSvidTtlMs: number };
  ds: Datastore;
  ca: CaManager;
  hub: SyncHub;
  limiter: SigningLimits;
  /** Sync opens and renewals, charged before decoding by agent-call-gate.ts (the same object): only refunds here. */
  budgets: AgentCallBudgets;
  /** Shared with agent-call-gate.ts, so a leaf's issuer is looked up once for both. */
  anchor: AgentSvidAnchor;
  /** Shared with agent-call-gate.ts, so a call's client certificate is parsed once for both. */
  certificates: PresentedCertificates;
  clock: Clock;
  log: Logger;
}

/** An agent SVID as the datastore records it: `issuerId` is the CA journal ID of the intermediate that signed it. */
interface AgentSvid {
  chain: Buffer[];
  notAfter: number;
  serial: string;
  issuerId: string;
}

interface SyncRequest extends KnownEntries {
  since_revision?: number;
  bundle_sequence?: number;
  agent_version?: string;
}

interface SyncUpdate {
  revision: number;
  initial: boolean;
  entries: ProtoEntry[];
  removed_entry_ids: string[];
  bundle?: ProtoBundle;
  federated_bundles: ProtoBundle[];
  federated_bundles_changed: boolean;
  tainted_authority_ids: string[];
}


/**
 * An entry's TTL as signed today: 0 is the server's current default; a TTL above today's maximum (lowered since the
 * entry was written) is the maximum, since intermediates and JWT keys are sized to cover only that.
 */
function signedTtlMs(entrySeconds: number, defaultMs: number, maxMs: number): number {
  return entrySeconds === 0 ? defaultMs : Math.min(entrySeconds * 1000, maxMs);
}

/** Where every agent SVID's SPIFFE ID starts: the agents' part of the trust domain. */
export function agentIdPrefix(trustDomain: string): string {
  return `spiffe://${trustDomain}/meshid/agent/`;
}

/** The agent API (meshid.agent.v1.Node): attestation, renewal, the push stream and signing. */
export function nodeService(deps: NodeServiceDeps): UntypedServiceImplementation {
  const { ds, ca, hub, anchor, budgets, certificates, clock, log } = deps;
  const serverId = `spiffe://${deps.trustDomain}/meshid/server`;
  const agentPrefix = agentIdPrefix(deps.trustDomain);
  const copiedIdentities = new CopiedAgentIdentities(clock, log);
  const attestRefusals = new LogThrottle(clock);
  const agentVersions = new AgentVersionRecorder({ ds, clock, log });
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
  const auth = async (call: Parameters<typeof authenticateAgent>[0]): Promise<AuthenticatedAgent> => {
    const agent = await authenticateAgent(call, ds, agentPrefix, clock.now(), anchor, (der) => certificates.parse(der)).catch((err: unknown) => {
      if (err instanceof MeshidError) throw copiedIdentities.refused(err, call.getPeer());
      throw err;
    });
    // The agent has just retired the SVID it renewed from: a Sync stream still running on that one must end.
    if (agent.retiredPrevious) hub.emit({ kind: 'agent', spiffeIds: new Set([agent.spiffeId]) });
    return agent;
  };

  /** The open Sync stream of each agent, by SPIFFE ID: its end(). */
  const syncStreams = new Map<string, (err: MeshidError) => void>();

  const authorizedSets = new AuthorizedSets(hub.index, serverId);
  const authorized = (agent: AttestedAgent): Map<string, RegistrationEntry> => authorizedSets.of(agent);

  const signAgentSvid = (agentId: string, datacenter: string, csr: ParsedCsr): AgentSvid => {
    const signed = ca.signX509Svid({ datacenter, publicKey: csr.publicKey, spiffeId: agentId, ttlMs: deps.agentSvidTtlMs });
    return { chain: signed.chain, notAfter: signed.notAfter, serial: parseCertificate(signed.chain[0]!).serialHex, issuerId: signed.authorityId };
  };

  return {
    // Its attempts per source address were charged before the request was decoded (agent-call-gate.ts).
    Attest: unary(log, 'Attest', loggingAttestRefusals(async (req: { join_token?: string; csr?: Buffer; agent_version?: string }) => {
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
    })),

    Renew: unary(log, 'Renew', async (req: { csr?: Buffer }, call) => {
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
    }),

    SignX509Svids: unary(log, 'SignX509Svids', async (req: { items?: Array<{ entry_id?: string; csr?: Buffer }> }, call) => {
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
    }),

    SignJwtSvid: unary(log, 'SignJwtSvid', async (req: { entry_id?: string; audience?: string[] }, call) => {
      const agent = await auth(call);
      const audience = req.audience ?? [];
      checkAudiences(audience);
      const wait = deps.limiter.admit(agent.spiffeId, 1);
      if (wait > 0) throw signingRefused(wait);
      const entry = authorized(agent).get(req.entry_id ?? '');
      if (entry === undefined) throw permissionDenied(`entry ${req.entry_id ?? ''} is not authorized for this agent`);
      const jwt = ca.signJwtSvid({ spiffeId: entry.spiffeId, audience, ttlMs: signedTtlMs(entry.jwtSvidTtlSeconds, deps.ttls.defaultJwtSvidTtlMs, deps.ttls.maxJwtSvidTtlMs) });
      return { token: jwt.token, expires_at: Math.floor(jwt.expiresAt / 1000), issued_at: Math.floor(jwt.issuedAt / 1000) };
    }),

    Sync: (call: ServerWritableStream<SyncRequest, SyncUpdate>) => {
      void runSync(call).catch((err: unknown) => {
        if (isServerFault(err)) log.error({ err }, 'sync stream failed');
        if (!call.cancelled && !call.destroyed) call.emit('error', toServiceError(err));
      });
    },
  };

  async function runSync(call: ServerWritableStream<SyncRequest, SyncUpdate>): Promise<void> {
    // Its Sync-open budget was charged before the request was decoded (agent-call-gate.ts).
    let agent = await auth(call);
    await agentVersions.record(agent, call.request.agent_version);
    // Gone while it was authenticated: no end handler would ever run for what is set up below.
    if (call.cancelled || call.destroyed) return;
    const agentId = agent.spiffeId;
    const peer = call.getPeer();
    const sent = new SentEntries(call.request);
    let bundleSequence = Number(call.request.bundle_sequence ?? 0);
    // Unset, not '': the first update always states the federated bundles, none included, so an agent reconnecting
    // with bundles the server has since dropped (a delete while it was away) stops serving them.
    let federatedKey: string | undefined;
    let taintedKey = '';
    let initial = true;
    let ended = false;
    // While the agent is not reading, updates are not queued one per change: the diff against `sent` is taken once
    // the stream drains, so a slow agent costs the server one pending update, not every change since it stalled.
    let blocked = false;
    // A revoke of its root seen, the stream is being ended: nothing more is pushed to it.
    let cuttingOff = false;

    const push = (): void => {
      if (ended || blocked || cuttingOff) return;
      const entries = authorized(agent);
      const { upserts, removed } = sent.update(entries);
      const own = ca.bundle();
      const bundleChanged = own.sequence !== bundleSequence;
      const federatedTds = [...new Set([...entries.values()].flatMap((e) => e.federatesWith))].sort();
      const federated = federatedTds.map((td) => hub.federatedBundle(td)).filter((b) => b !== undefined);
      const fedKey = hub.federatedStamp(federatedTds);
      const federatedChanged = fedKey !== federatedKey;
      const tainted = ca.taintedKeyIds();
      const taintedChanged = tainted.join(',') !== taintedKey;
      if (!initial && upserts.length === 0 && removed.length === 0 && !bundleChanged && !federatedChanged && !taintedChanged) return;
      taintedKey = tainted.join(',');
      bundleSequence = own.sequence;
      federatedKey = fedKey;
      const update: SyncUpdate = {
        revision: hub.index.revision,
        initial,
        entries: upserts.map(entryToProto),
        removed_entry_ids: removed,
        federated_bundles: federatedChanged ? federated.map(trustBundleToProto) : [],
        federated_bundles_changed: federatedChanged,
        tainted_authority_ids: tainted,
      };
      if (bundleChanged || initial) update.bundle = trustBundleToProto(own);
      initial = false;
      if (!call.write(update)) {
        blocked = true;
        call.once('drain', () => {
          blocked = false;
          push();
        });
      }
    };

    // An agent with no Sync stream left (gone, evicted, re-attested under a new ID) keeps no authorized set here.
    const release = (): void => {
      if (syncStreams.get(agentId) !== end) return;
      syncStreams.delete(agentId);
      authorizedSets.forget(agentId);
    };
    const end = (err: MeshidError): void => {
      if (ended) return;
      ended = true;
      expiry.cancel();
      unsubscribe();
      release();
      call.emit('error', toServiceError(err));
    };
    // One Sync stream per agent: a newer one (a reconnect, a move to a renewed SVID) ends the older, so no agent can
    // hold many streams (each with its own diff state and pushes; its request's known list, up to 4 MB, is decoded at
    // every open) and exhaust the server's memory.
    syncStreams.get(agentId)?.(
      unavailable(
        'superseded by a newer Sync stream of the same agent (should this repeat, another host runs a copy of this ' +
          "agent's data dir: the first renewal of the agent SVID cuts one of them off)",
      ),
    );
    syncStreams.set(agentId, end);

    const banned = (): MeshidError => permissionDenied(bannedRefusal(agent.spiffeId));
    const onEvent = (event: HubEvent): void => {
      if (event.kind === 'stopping') return end(unavailable('meshid-server is shutting down; reconnect'));
      // A root revoked since the stream opened cuts its agent off here too, not only at its next unary call. A ban
      // committed before it is the operator's word and outranks it (the agent stops, rather than re-attesting), even
      // when the revoke's event overtakes the ban's: looked up, not taken from the order of the events.
      if (event.kind === 'bundle' && !anchor.chainsToBundle(agent.presentedCert, clock.now())) {
        cuttingOff = true;
        const notAnchored = permissionDenied(svidNotAnchored(agentId));
        ds.getAgent(agent.spiffeId).then(
          (a) => end(a?.banned === true ? banned() : notAnchored),
          () => end(notAnchored),
        );
        return;
      }
      if (event.kind !== 'agent') return push();
      if (event.spiffeIds !== undefined && !event.spiffeIds.has(agentId)) return;
      // Evictions and bans end the stream with the reason; selector changes re-evaluate authorization; a stream
      // opened with an SVID the agent has since retired (say, a copy of it) ends too.
      ds.getAgent(agent.spiffeId).then(
        (a) => {
          if (a === undefined) return end(permissionDenied(`${REATTEST_PREFIX}agent ${agent.spiffeId} was evicted`));
          if (a.banned) return end(banned());
          if (agent.presentedSerial !== a.certSerial && agent.presentedSerial !== a.previousCertSerial) {
            // A copy's stream, told so in the server's log as its refused calls are: once cut off here, it looks for a
            // new join token and calls no more. Not when it is the agent's own stream on the SVID it has just moved off
            // (a cancel on the old connection racing its first call on the new one), which copiedIdentities tells and ends
            // UNAVAILABLE instead, so the agent does not drop the identity it has just renewed.
            return end(copiedIdentities.refused(notCurrentSvid(agentId, agent.presentedCert, a, 'the SVID this Sync stream was opened with'), peer));
          }
          agent = { ...a, presentedSerial: agent.presentedSerial, presentedCert: agent.presentedCert, retiredPrevious: false };
          push();
        },
        (err: unknown) => log.error({ err }, 'agent lookup failed'),
      );
    };
    const unsubscribe = hub.subscribe(onEvent);
    // A stream lives as long as its agent reads it, but the SVID it was opened with (the agent's previous one, during
    // a rotation; a copy of it) does not: entries stop flowing on it when it expires. UNAVAILABLE, not `must
    // re-attest:`: the real agent reconnects with the SVID it holds now, instead of discarding its identity; if that
    // one has expired too, the reconnect is refused as expired. One timer per stream: with the system clock that is a
    // 30 s re-check per stream (clock.ts), all in Node's one 30 s timer list, cheaper than a sweep that would scan
    // every stream.
    const presented = agent.presentedCert;
    const expiry = clock.setTimer(
      () => end(unavailable(`${svidExpired(agentId, presented.notAfter)}: this Sync stream, opened with it, ends; reconnect with the current SVID`)),
      presented.notAfter - clock.now(),
    );
    const stop = (): void => {
      ended = true;
      expiry.cancel();
      unsubscribe();
      release();
    };
    call.on('cancelled', stop);
    call.on('close', stop);
    call.on('error', stop);
    await hub.settled();
    push();
    log.debug({ agent: agent.spiffeId }, 'sync stream opened');
  }
}

