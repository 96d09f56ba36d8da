import type { Logger } from '../common/log.js';
import { formatDuration } from '../common/duration.js';
import type { ServerConfig } from './config.js';
import type { Datastore } from './datastore/datastore.js';
import type { SyncHub } from './api/sync-hub.js';
import { serverId } from './api/entry-validation.js';

/** Entries created under higher limits than today's are signed with today's (node-signing); say so once at start. */
export function warnAboutCappedEntries(hub: SyncHub, config: ServerConfig, log: Logger): void {
  let x509 = 0;
  let jwt = 0;
  const nodeAliasParent = serverId(config.trustDomain);
  for (const e of hub.index.entries()) {
    // Node aliases group agents; nothing is signed for them.
    if (e.parentId === nodeAliasParent) continue;
    if (e.x509SvidTtlSeconds * 1000 > config.maxX509SvidTtlMs) x509++;
    if (e.jwtSvidTtlSeconds * 1000 > config.maxJwtSvidTtlMs) jwt++;
  }
  if (x509 > 0) {
    log.warn({ entries: x509, maxX509SvidTtl: formatDuration(config.maxX509SvidTtlMs) }, 'entries ask for X.509-SVIDs longer than max_x509_svid_ttl; they are signed for max_x509_svid_ttl');
  }
  if (jwt > 0) {
    log.warn({ entries: jwt, maxJwtSvidTtl: formatDuration(config.maxJwtSvidTtlMs) }, 'entries ask for JWT-SVIDs longer than max_jwt_svid_ttl; they are signed for max_jwt_svid_ttl');
  }
}

/**
 * A datacenter taken out of the config has its intermediate retired, but its agents stay attested: nothing is signed
 * for them any more (each refusal is logged on the agent's host only) and they are cut off when their own SVID
 * expires. Say so once at start, on the server, where the config was changed.
 */
export async function warnAboutAgentsOfUnservedDatacenters(ds: Datastore, config: ServerConfig, now: number, log: Logger): Promise<void> {
  const stranded: Record<string, number> = {};
  // Counted by the datastore: reading every agent to count a few cost a start with many agents their whole rows.
  for (const [datacenter, agents] of await ds.countLiveAgentsByDatacenter(now)) {
    if (!config.datacenters.includes(datacenter)) stranded[datacenter] = agents;
  }
  if (Object.keys(stranded).length === 0) return;
  log.warn(
    { agentsByDatacenter: stranded, datacenters: config.datacenters },
    'attested agents belong to datacenters not in the config: nothing is signed for them, and each is cut off when its ' +
      'agent SVID expires; add the datacenter back, or attest those hosts again with join tokens of a configured datacenter',
  );
}
