import { MAX_AUDIENCES } from '../jwt/audience-limits.js';

/** The most CSRs one SignX509Svids call may carry (the agent sends batches of 250). */
export const MAX_X509_SVIDS_PER_CALL = 1000;

/**
 * The most resource names one SDS request may carry, in each of its name lists (and a delta stream's subscription):
 * far above any real Envoy, which opens one stream per secret (a SotW request names one secret, a delta stream
 * subscribes the secrets its listeners and clusters use), far below abuse. The agent's SDS handler refuses more with
 * INVALID_ARGUMENT naming the list (resource-names.ts, delta-stream.ts); this limit holds the bytes to it before they
 * are decoded.
 */
export const MAX_SDS_RESOURCE_NAMES = 1000;

/**
 * Repeated request fields with a hard limit of their own, by full field name: wire-check.ts refuses a request that
 * holds more while it walks the bytes, before protobufjs decodes them. Decoding costs per value, not per byte (two
 * million empty items fit in 4 MiB and take ~0.2–0.6 s of CPU), and grpc-js decodes a request before any handler or
 * budget sees it: a limit the handler checks only after decoding would leave that cost unbounded. Only fields whose
 * handler refuses more anyway belong here; a field legitimately as large as the message allows (Sync's `known`)
 * does not.
 */
export const REPEATED_LIMITS: ReadonlyMap<string, number> = new Map([
  ['meshid.agent.v1.SignX509SvidsRequest.items', MAX_X509_SVIDS_PER_CALL],
  ['meshid.agent.v1.SignJwtSvidRequest.audience', MAX_AUDIENCES],
  // The Workload API's proto declares no package: its types have bare names.
  ['JWTSVIDRequest.audience', MAX_AUDIENCES],
  ['envoy.service.discovery.v3.DiscoveryRequest.resource_names', MAX_SDS_RESOURCE_NAMES],
  ['envoy.service.discovery.v3.DeltaDiscoveryRequest.resource_names_subscribe', MAX_SDS_RESOURCE_NAMES],
  ['envoy.service.discovery.v3.DeltaDiscoveryRequest.resource_names_unsubscribe', MAX_SDS_RESOURCE_NAMES],
  // A map: its entries are counted as they arrive, a key sent twice twice (no encoder sends one twice).
  ['envoy.service.discovery.v3.DeltaDiscoveryRequest.initial_resource_versions', MAX_SDS_RESOURCE_NAMES],
]);
