const PRUNED_AT_EXPIRY =
  'meshid-server removes an agent once its agent SVID has expired (housekeeping, about once a minute), and the host attests ' +
  'again with a new join token: remove it';

/**
 * spire-server settings meshid has no counterpart for, with what to do instead: a SPIRE config translated to JSON is
 * refused with the meshid way, not "unknown key". The blocks of SPIRE's layout (plugins, telemetry) count as keys.
 */
export const SPIRE_KEYS_NOT_SUPPORTED = {
  bind_port: 'put the port in bind_address, as host:port (e.g. "0.0.0.0:8081")',
  socket_path: 'the admin API socket is admin_socket',
  registration_uds_path: 'the admin API socket is admin_socket',
  ca_ttl: 'meshid has a root (root_ttl, 3650d) above one intermediate per datacenter (intermediate_ttl, 7d); intermediate_ttl is the closest',
  agent_ttl: 'set agent_svid_ttl',
  default_svid_ttl: 'set default_x509_svid_ttl',
  ca_subject: 'meshid names its CAs by the trust domain and datacenter: remove it',
  jwt_issuer: 'JWT-SVIDs carry no iss claim (the JWT-SVID spec does not ask for one): remove it',
  jwt_key_type: 'JWT keys are EC P-256 (ES256): remove it',
  admin_ids: 'the admin API is the admin_socket, guarded by file permissions: remove it',
  audit_log_enabled: 'meshid has no audit log: remove it',
  disable_jwt_svids:
    'meshid-server always keeps a JWT signing key and signs the JWT-SVIDs a workload asks for (FetchJWTSVID), only for an identity ' +
    'it already holds; there is no switch: remove it',
  max_attested_node_info_staleness: "meshid-server checks an agent's record (banned, evicted, current SVID) on every call, so a ban or an eviction takes effect at once: remove it",
  proxy_protocol_trusted_cidrs: 'meshid-server does not read PROXY protocol headers (its per-address limits see the address that connects): remove it',
  prune_attested_nodes_expired_for: PRUNED_AT_EXPIRY,
  prune_attested_nodes_batch_size: PRUNED_AT_EXPIRY,
  prune_tofu_nodes: PRUNED_AT_EXPIRY,
  ratelimit: 'set agent_sign_rate and agent_sign_burst (per agent), global_sign_rate and global_sign_burst',
  federation:
    'the settings are flat: bundle_endpoint_address (host:port), bundle_endpoint_refresh_hint, bundle_endpoint_cert_file and ' +
    'bundle_endpoint_key_file (https_web), and federates_with at the top level',
  log_file: 'the server logs to stderr: redirect it to a file, or let systemd or the container runtime collect it',
  log_format: 'the server writes JSON lines, or readable lines when stderr is a terminal',
  log_source_location: 'log lines name their subsystem, not a source line: remove it',
  experimental: 'meshid has no experimental settings: remove the block',
  profiling_enabled: 'profile with node --cpu-prof or --heap-prof in NODE_OPTIONS instead',
  profiling_port: 'profile with node --cpu-prof or --heap-prof in NODE_OPTIONS instead',
  profiling_freq: 'profile with node --cpu-prof or --heap-prof in NODE_OPTIONS instead',
  profiling_names: 'profile with node --cpu-prof or --heap-prof in NODE_OPTIONS instead',
  plugins:
    "meshid-server's plugins are built in (SQLite in data_dir, join_token node attestation, keys in data_dir; an upstream CA " +
    'with upstream_ca_cert, upstream_ca_key and upstream_bundle): remove the block',
  telemetry: 'meshid exports no metrics yet: remove the block',
} as const satisfies Readonly<Record<string, string>>;
