import type { ServerWritableStream } from '@grpc/grpc-js';
import { permissionDenied, unavailable, type MeshidError } from '../../common/errors.js';
import { toServiceError } from '../../common/grpc-status.js';
import { bannedRefusal, notCurrentSvid, REATTEST_PREFIX, svidExpired, svidNotAnchored } from './agent-auth.js';
import { trustBundleToProto } from './convert.js';
import { syncEntryProto } from './sync-entry-encoding.js';
import { OwnBundleProto } from './own-bundle-proto.js';
import { isServerFault } from './handler.js';
import { AgentVersionRecorder } from './agent-version.js';
import type { HubEvent } from './sync-hub.js';
import { SentEntries, type KnownEntries } from './sent-entries.js';
import { syncUpdateMessages, type SyncUpdate } from './sync-update-parts.js';
import type { NodeContext } from './node-context.js';
import type { RegistrationEntry } from '../datastore/datastore.js';
import { AuthorizedSet } from '../entries/authorized-set.js';

interface SyncRequest extends KnownEntries {
  since_revision?: number;
  bundle_sequence?: number;
  agent_version?: string;
}

/**
 * The agent API's Sync: the stream that pushes an agent its authorized entries, bundles and tainted authorities as
 * they change, one stream per agent.
 */
export function syncCall(ctx: NodeContext) {
  const { deps, copiedIdentities, auth, authorized, authorizedSets } = ctx;
  const { ds, ca, hub, anchor, clock, log } = deps;
  const agentVersions = new AgentVersionRecorder({ ds, clock, log });
  const ownBundle = new OwnBundleProto(ca);

  /** The open Sync stream of each agent, by SPIFFE ID: its end(). */
  const syncStreams = new Map<string, (err: MeshidError) => void>();

  return (call: ServerWritableStream<SyncRequest, SyncUpdate>) => {
    void runSync(call).catch((err: unknown) => {
      if (isServerFault(err)) log.error({ err }, 'sync stream failed');
      if (!call.cancelled && !call.destroyed) call.emit('error', toServiceError(err));
    });
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
      // The sequence alone: building the bundle parses its JWT keys (~0.8 ms), once per agent at every entry change.
      const ownSequence = ca.x509Bundle().sequence;
      const bundleChanged = ownSequence !== bundleSequence;
      const federatedTds = federatedTrustDomains(entries);
      const federated = federatedTds.map((td) => hub.federatedBundle(td)).filter((b) => b !== undefined);
      const fedKey = hub.federatedStamp(federatedTds);
      const federatedChanged = fedKey !== federatedKey;
      const tainted = ca.taintedKeyIds();
      const taintedChanged = tainted.join(',') !== taintedKey;
      if (!initial && upserts.length === 0 && removed.length === 0 && !bundleChanged && !federatedChanged && !taintedChanged) return;
      taintedKey = tainted.join(',');
      bundleSequence = ownSequence;
      federatedKey = fedKey;
      // A push too large for one message goes as several (sync-update-parts.ts).
      const messages = syncUpdateMessages({
        revision: hub.index.revision,
        initial,
        // Encoded once per entry version for every stream (sync-entry-encoding.ts).
        entries: upserts.map(syncEntryProto),
        removed,
        bundle: bundleChanged || initial ? ownBundle.get() : undefined,
        federatedBundles: federatedChanged ? federated.map(trustBundleToProto) : undefined,
        tainted,
      });
      let writable = true;
      // Every message is written: `sent` already counts them as held.
      for (const update of messages) writable = call.write(update) && writable;
      initial = false;
      if (!writable) {
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

/**
 * The trust domains an authorized set federates with, sorted. Kept per subtree, which a change that did not reach it
 * leaves the same object and which agents matching one node alias share, so a push after an entry change reads the
 * changed subtree's entries once, not every agent's every entry.
 */
const federatedOfSet = new WeakMap<object, string[]>();
function federatedTrustDomains(entries: ReadonlyMap<string, RegistrationEntry>): string[] {
  let tds = federatedOfSet.get(entries);
  if (tds === undefined) {
    tds =
      entries instanceof AuthorizedSet
        ? [...new Set(entries.parts.flatMap((p) => federatedOf(p.entries)))].sort()
        : federatedOf(entries);
    federatedOfSet.set(entries, tds);
  }
  return tds;
}
function federatedOf(entries: ReadonlyMap<string, RegistrationEntry>): string[] {
  let tds = federatedOfSet.get(entries);
  if (tds === undefined) {
    tds = [...new Set([...entries.values()].flatMap((e) => e.federatesWith))].sort();
    federatedOfSet.set(entries, tds);
  }
  return tds;
}
