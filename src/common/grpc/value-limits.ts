/**
 * The most values one request may hold in all, by request type: every field occurrence at any depth counts, known or
 * unknown, and each element of a packed list. wire-check.ts refuses a request that holds more while it walks the
 * bytes, before protobufjs decodes them.
 *
 * Decoding costs per value: the 4 MiB a request may have hold two million empty items or a Struct of 300,000 keys,
 * 0.3–2 s of CPU before any handler, attestation or budget sees the call. On the agent socket any local process, with
 * no identity at all, can send such requests, and for that long every workload's Workload API and SDS call waits;
 * at the server, Attest is open to anyone who can reach its port. A limit per field (repeated-limits.ts) does not
 * close this: the values can sit in fields no real client fills (Envoy's Node.client_features, a Struct's keys).
 *
 * Each limit stands far above what the type's real clients send, so decoding the most a request may hold costs tens
 * of milliseconds at worst:
 * - an Envoy DiscoveryRequest carries its Node with every request, and the Node lists each extension compiled in
 *   (~700 in a full build, ~4 values each) and its metadata Struct (Istio's: ~1,000 leaves, 4 values each): ~7,000;
 * - the Workload API's requests carry at most an audience list (64) and a token or SPIFFE ID;
 * - SignX509Svids carries at most 1000 items of 3 values.
 * Sync has no limit: its `known` list legitimately holds three values per entry the agent serves, as many as the
 * message size allows. The admin API, on a socket only its owner can open, has none either.
 */
const AGENT_SOCKET_SMALL_REQUEST = 1000;
export const MAX_SDS_REQUEST_VALUES = 50_000;

export const REQUEST_VALUE_LIMITS: ReadonlyMap<string, number> = new Map([
  // The agent socket: Workload API (its proto declares no package), SDS, health and reflection.
  ['X509SVIDRequest', AGENT_SOCKET_SMALL_REQUEST],
  ['X509BundlesRequest', AGENT_SOCKET_SMALL_REQUEST],
  ['JWTSVIDRequest', AGENT_SOCKET_SMALL_REQUEST],
  ['JWTBundlesRequest', AGENT_SOCKET_SMALL_REQUEST],
  ['ValidateJWTSVIDRequest', AGENT_SOCKET_SMALL_REQUEST],
  ['envoy.service.discovery.v3.DiscoveryRequest', MAX_SDS_REQUEST_VALUES],
  ['envoy.service.discovery.v3.DeltaDiscoveryRequest', MAX_SDS_REQUEST_VALUES],
  ['grpc.health.v1.HealthCheckRequest', AGENT_SOCKET_SMALL_REQUEST],
  ['grpc.reflection.v1.ServerReflectionRequest', AGENT_SOCKET_SMALL_REQUEST],
  ['grpc.reflection.v1alpha.ServerReflectionRequest', AGENT_SOCKET_SMALL_REQUEST],
  // The server's agent API.
  ['meshid.agent.v1.AttestRequest', 1000],
  ['meshid.agent.v1.RenewRequest', 1000],
  ['meshid.agent.v1.SignX509SvidsRequest', 10_000],
  ['meshid.agent.v1.SignJwtSvidRequest', 1000],
]);
