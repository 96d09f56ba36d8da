import path from 'node:path';
import { invalidArgument } from '../common/errors.js';
import { checkConfigKeys, readJsonConfigObject, refuseEmptyStrings, type ConfigKeyType } from '../common/config-file.js';
import { configuredLogLevel, type LogLevel } from '../common/log.js';
import { formatDuration } from '../common/duration.js';
import { parseHostPort } from '../common/host-port.js';
import { checkSocketPathLength } from '../common/socket-file.js';
import { checkLiteralListeners, type ListenerSetting } from './listener-clash.js';
import type { UpstreamCaFiles } from './ca/upstream-ca.js';
import type { ServingCertFiles } from './federation/serving-cert-file.js';
import { checkRelationshipKeys, compileRelationships, type FederationRelationship, type RawRelationship } from './federation/relationship.js';
import { isJsonObject } from '../common/json-object.js';
import { configuredTrustDomain } from '../common/spiffe/spiffe-id.js';
import type { KeyType } from '../common/x509/keys.js';
import { SPIRE_KEYS_NOT_SUPPORTED } from './spire-keys-not-supported.js';
import { checkCoverage, configDuration, publicationLeadMs } from './ttl-limits.js';
import { compileHealthChecks, HEALTH_CHECKS_KEYS, healthListenerAddress, type HealthChecksConfig, type RawHealthChecksConfig } from '../common/health/health-checks-config.js';

/**
 * meshid-server configuration: raw input (config file + flags) is validated, cross-checked and compiled into a frozen
 * ServerConfig. Unknown keys are errors that name the key; cross-field rules say which values to change.
 */
export interface ServerConfig {
  readonly trustDomain: string;
  readonly dataDir: string;
  readonly bindAddress: string;
  readonly adminSocket: string;
  readonly datacenters: readonly string[];
  readonly caKeyType: KeyType;
  readonly x509SvidTtlMs: number;
  /** The longest X.509-SVID TTL an entry may ask for; intermediates are sized so they can always cover it. */
  readonly maxX509SvidTtlMs: number;
  readonly jwtSvidTtlMs: number;
  /** The longest JWT-SVID TTL an entry may ask for; JWT keys are sized to cover it. */
  readonly maxJwtSvidTtlMs: number;
  readonly intermediateTtlMs: number;
  readonly rootTtlMs: number;
  /** How long a new root is published in the bundle before it signs intermediates. */
  readonly rootActivationDelayMs: number;
  readonly jwtKeyTtlMs: number;
  readonly joinTokenTtlMs: number;
  readonly agentSvidTtlMs: number;
  /** Files of the CA that signs the intermediates instead of a root meshid makes (see ca/upstream-ca.ts). */
  readonly upstreamCa: UpstreamCaFiles | undefined;
  readonly logLevel: LogLevel;
  /** Signing requests per agent per second (token bucket refill) and burst. */
  readonly agentSignRate: number;
  readonly agentSignBurst: number;
  /** Signing requests per second and burst across all agents. */
  readonly globalSignRate: number;
  readonly globalSignBurst: number;
  /** HOST:PORT of the SPIFFE bundle endpoint; undefined serves none. */
  readonly bundleEndpointAddress: string | undefined;
  /** The web PKI certificate files the endpoint presents (profile https_web); undefined: the server SVID (https_spiffe). */
  readonly bundleEndpointWebCert: ServingCertFiles | undefined;
  /** The spiffe_refresh_hint the own bundle carries: how often partners should poll it (SPIRE's `refresh_hint`). */
  readonly bundleRefreshHintSeconds: number;
  /** Trust domains whose bundles are fetched from their bundle endpoints (config file only). */
  readonly federatesWith: readonly FederationRelationship[];
  /** The HTTP health check listener (SPIRE's `health_checks`); undefined when off, the default. */
  readonly healthChecks: HealthChecksConfig | undefined;
}

/** Raw settings as they appear in the JSON config file (snake_case) or come from flags. */
export interface RawServerConfig {
  trust_domain?: string;
  data_dir?: string;
  bind_address?: string;
  admin_socket?: string;
  datacenters?: string[];
  ca_key_type?: string;
  default_x509_svid_ttl?: string | number;
  max_x509_svid_ttl?: string | number;
  default_jwt_svid_ttl?: string | number;
  max_jwt_svid_ttl?: string | number;
  intermediate_ttl?: string | number;
  root_ttl?: string | number;
  root_activation_delay?: string | number;
  jwt_key_ttl?: string | number;
  join_token_ttl?: string | number;
  agent_svid_ttl?: string | number;
  upstream_ca_cert?: string;
  upstream_ca_key?: string;
  upstream_bundle?: string;
  log_level?: string;
  agent_sign_rate?: number;
  agent_sign_burst?: number;
  global_sign_rate?: number;
  global_sign_burst?: number;
  bundle_endpoint_address?: string;
  bundle_endpoint_cert_file?: string;
  bundle_endpoint_key_file?: string;
  bundle_endpoint_cert_sync_interval?: string | number;
  bundle_endpoint_refresh_hint?: string | number;
  federates_with?: Record<string, RawRelationship>;
  health_checks?: RawHealthChecksConfig;
}

export const KNOWN_KEYS: Readonly<Record<keyof RawServerConfig, ConfigKeyType>> = {
  trust_domain: 'string',
  data_dir: 'string',
  bind_address: 'string',
  admin_socket: 'string',
  datacenters: 'array',
  ca_key_type: 'string',
  default_x509_svid_ttl: 'string|number',
  max_x509_svid_ttl: 'string|number',
  default_jwt_svid_ttl: 'string|number',
  max_jwt_svid_ttl: 'string|number',
  intermediate_ttl: 'string|number',
  root_ttl: 'string|number',
  root_activation_delay: 'string|number',
  jwt_key_ttl: 'string|number',
  join_token_ttl: 'string|number',
  agent_svid_ttl: 'string|number',
  upstream_ca_cert: 'string',
  upstream_ca_key: 'string',
  upstream_bundle: 'string',
  log_level: 'string',
  agent_sign_rate: 'number',
  agent_sign_burst: 'number',
  global_sign_rate: 'number',
  global_sign_burst: 'number',
  bundle_endpoint_address: 'string',
  bundle_endpoint_cert_file: 'string',
  bundle_endpoint_key_file: 'string',
  bundle_endpoint_cert_sync_interval: 'string|number',
  bundle_endpoint_refresh_hint: 'string|number',
  federates_with: 'object',
  health_checks: 'object',
};

export const DEFAULT_ADMIN_SOCKET = '/tmp/meshid-server/private/admin.sock';

/**
 * What a setting left out is, in one place: compileServerConfig reads these, and `run --help` prints them, so the
 * help cannot drift from what the server does. TTLs as an operator writes them.
 */
export const SERVER_DEFAULTS = {
  data_dir: '.meshid/server',
  bind_address: '0.0.0.0:8081',
  datacenter: 'dc1',
  ca_key_type: 'ec-p256',
  default_x509_svid_ttl: '24h',
  default_jwt_svid_ttl: '5m',
  intermediate_ttl: '7d',
  root_ttl: '3650d',
  root_activation_delay: '24h',
  jwt_key_ttl: '1d',
  join_token_ttl: '600s',
  /** Seconds; less where the CA publishes new keys sooner than twice that (bundleRefreshHint). */
  bundle_endpoint_refresh_hint: 300,
  bundle_endpoint_cert_sync_interval: '1m',
} as const satisfies Readonly<Record<string, string | number>>;
/** The longest a join token may stay usable: a token is a credential lying about until an agent spends it. */
export const MAX_JOIN_TOKEN_TTL_SECONDS = 7 * 24 * 3600;
const KEY_TYPES: readonly KeyType[] = ['ec-p256', 'ec-p384', 'rsa-2048'];
export const DATACENTER_RE = /^[a-z0-9][a-z0-9_-]{0,62}$/;

/** Reads a JSON config file; a "server" top-level object is accepted too, for room to grow. */
export function readConfigFile(file: string, setByFlags?: ReadonlySet<string>): RawServerConfig {
  const obj = readJsonConfigObject(file, 'server');
  checkConfigKeys(obj, KNOWN_KEYS, `config file ${file}`, SPIRE_KEYS_NOT_SUPPORTED);
  refuseEmptyStrings(obj, `config file ${file}`, setByFlags);
  if (obj['health_checks'] !== undefined) checkConfigKeys(obj['health_checks'] as Record<string, unknown>, HEALTH_CHECKS_KEYS, `config file ${file}: health_checks`);
  // Checked here, where the file is known, so a misspelt relationship key is reported as the other key errors are.
  const federatesWith = obj['federates_with'];
  if (isJsonObject(federatesWith)) {
    for (const [name, rel] of Object.entries(federatesWith)) if (isJsonObject(rel)) checkRelationshipKeys(rel, `config file ${file}: federates_with "${name}"`);
  }
  const dcs = obj['datacenters'];
  if (Array.isArray(dcs) && dcs.some((dc) => typeof dc !== 'string')) throw invalidArgument(`config file ${file}: "datacenters" must be an array of strings`);
  // An empty list reads as "no datacenters", which a server cannot run with; taking it for the default (dc1) would
  // hide a list emptied by mistake (a template's placeholder, a script's filter) behind a datacenter nobody named.
  if (Array.isArray(dcs) && dcs.length === 0) throw invalidArgument(`config file ${file}: "datacenters" is empty: name at least one (e.g. ["dc1"]), or leave the key out for the default dc1`);
  return obj as RawServerConfig;
}

/** Validates raw settings and compiles them into a frozen ServerConfig; throws a MeshidError naming what to change. */
export function compileServerConfig(raw: RawServerConfig): ServerConfig {
  if (raw.trust_domain === undefined) throw invalidArgument('trust domain is required: pass --trust-domain example.org or set trust_domain');
  const trustDomain = configuredTrustDomain(raw.trust_domain, 'trust_domain');
  if (raw.datacenters?.length === 0) throw invalidArgument('datacenters is empty: name at least one, or leave it out for the default dc1');
  const datacenters = [...(raw.datacenters ?? [SERVER_DEFAULTS.datacenter])];
  // Dropped without a word, a name given twice hid the datacenter meant in its place (a copied line left unedited).
  const twice = datacenters.find((dc, i) => datacenters.indexOf(dc) !== i);
  if (twice !== undefined) throw invalidArgument(`datacenter "${twice}" is named twice in datacenters: remove one, or name the datacenter you meant`);
  for (const dc of datacenters) {
    if (!DATACENTER_RE.test(dc)) {
      throw invalidArgument(`datacenter "${dc}" is invalid: use 1-63 lowercase letters, digits, "-" or "_", starting with a letter or digit`);
    }
  }
  const caKeyType = (raw.ca_key_type ?? SERVER_DEFAULTS.ca_key_type) as KeyType;
  if (!KEY_TYPES.includes(caKeyType)) throw invalidArgument(`ca_key_type "${raw.ca_key_type}" is not one of ${KEY_TYPES.join(', ')}`);

  const ttl = (value: string | number | undefined, fallback: string | number, name: string): number => configDuration(value ?? fallback, name);
  const x509SvidTtlMs = ttl(raw.default_x509_svid_ttl, SERVER_DEFAULTS.default_x509_svid_ttl, 'default_x509_svid_ttl');
  const maxX509SvidTtlMs = ttl(raw.max_x509_svid_ttl, x509SvidTtlMs / 1000, 'max_x509_svid_ttl');
  const jwtSvidTtlMs = ttl(raw.default_jwt_svid_ttl, SERVER_DEFAULTS.default_jwt_svid_ttl, 'default_jwt_svid_ttl');
  const maxJwtSvidTtlMs = ttl(raw.max_jwt_svid_ttl, jwtSvidTtlMs / 1000, 'max_jwt_svid_ttl');
  const intermediateTtlMs = ttl(raw.intermediate_ttl, SERVER_DEFAULTS.intermediate_ttl, 'intermediate_ttl');
  const rootTtlMs = ttl(raw.root_ttl, SERVER_DEFAULTS.root_ttl, 'root_ttl');
  const rootActivationDelayMs = ttl(raw.root_activation_delay, SERVER_DEFAULTS.root_activation_delay, 'root_activation_delay');
  const jwtKeyTtlMs = ttl(raw.jwt_key_ttl, SERVER_DEFAULTS.jwt_key_ttl, 'jwt_key_ttl');
  const joinTokenTtlMs = ttl(raw.join_token_ttl, SERVER_DEFAULTS.join_token_ttl, 'join_token_ttl');
  const agentSvidTtlMs = ttl(raw.agent_svid_ttl, x509SvidTtlMs / 1000, 'agent_svid_ttl');
  // token generate refuses a --ttl over the limit; a default over it would hand out such tokens unasked.
  if (joinTokenTtlMs > MAX_JOIN_TOKEN_TTL_SECONDS * 1000) {
    throw invalidArgument(`join_token_ttl (${formatDuration(joinTokenTtlMs)}) is longer than a join token may live (7d): lower it to 7d or less`);
  }

  checkCoverage(x509SvidTtlMs, maxX509SvidTtlMs, agentSvidTtlMs, intermediateTtlMs, rootTtlMs, maxJwtSvidTtlMs, jwtKeyTtlMs);
  if (maxJwtSvidTtlMs < jwtSvidTtlMs) {
    throw invalidArgument(`max_jwt_svid_ttl (${formatDuration(maxJwtSvidTtlMs)}) is shorter than default_jwt_svid_ttl (${formatDuration(jwtSvidTtlMs)}): raise max_jwt_svid_ttl`);
  }

  if ((raw.upstream_ca_cert === undefined) !== (raw.upstream_ca_key === undefined)) {
    throw invalidArgument('--upstream-ca-cert and --upstream-ca-key must be given together');
  }
  if (raw.upstream_bundle !== undefined && raw.upstream_ca_cert === undefined) {
    throw invalidArgument('--upstream-bundle names the roots of an upstream CA: give --upstream-ca-cert and --upstream-ca-key too');
  }
  const healthChecks = compileHealthChecks(raw.health_checks);
  checkLiteralListeners(tcpListeners(raw, healthChecks));
  const logLevel = configuredLogLevel(raw.log_level, 'log_level');
  const bundleEndpointWebCert = compileWebCert(raw);
  const dataDir = path.resolve(raw.data_dir ?? SERVER_DEFAULTS.data_dir);
  // Generous enough that an agent with 10,000 entries signs them all at start-up in one burst; what it protects
  // against is a host that keeps asking, not a big one.
  const rate = raw.agent_sign_rate ?? 1000;
  const burst = raw.agent_sign_burst ?? 20_000;
  // A burst below one full SignX509Svids call (1,000 CSRs) would refuse an agent's batch for ever, not for a while.
  // Finite: a JSON number too large for a double (1e400) reads as Infinity, which would switch the limit off unasked.
  if (!(Number.isFinite(rate) && rate > 0)) throw invalidArgument(`agent_sign_rate (${rate}) must be a number of CSRs per second above 0, e.g. 1000`);
  if (!(Number.isSafeInteger(burst) && burst >= 1000)) throw invalidArgument(`agent_sign_burst (${burst}) must be a whole number, at least 1000 (the CSRs one call may carry)`);
  // The CA signs ~6,000 CSRs/s per core (bench P1); the global budget keeps a storm below what it can absorb.
  const globalRate = raw.global_sign_rate ?? 5000;
  const globalBurst = raw.global_sign_burst ?? 50_000;
  if (!(Number.isFinite(globalRate) && globalRate > 0)) throw invalidArgument(`global_sign_rate (${globalRate}) must be a number of CSRs per second above 0, e.g. 5000`);
  if (!(Number.isSafeInteger(globalBurst) && globalBurst >= burst)) {
    throw invalidArgument(`global_sign_burst (${globalBurst}) must be a whole number, at least agent_sign_burst (${burst})`);
  }
  return Object.freeze({
    trustDomain,
    dataDir,
    bindAddress: hostPort(raw.bind_address ?? DEFAULT_BIND_ADDRESS, 'bind_address'),
    adminSocket: checkSocketPathLength(path.resolve(raw.admin_socket ?? DEFAULT_ADMIN_SOCKET), '--admin-socket, admin_socket'),
    datacenters: Object.freeze(datacenters),
    caKeyType,
    x509SvidTtlMs,
    maxX509SvidTtlMs,
    jwtSvidTtlMs,
    maxJwtSvidTtlMs,
    intermediateTtlMs,
    rootTtlMs,
    rootActivationDelayMs,
    jwtKeyTtlMs,
    joinTokenTtlMs,
    agentSvidTtlMs,
    upstreamCa:
      raw.upstream_ca_cert !== undefined && raw.upstream_ca_key !== undefined
        ? Object.freeze({
            certFile: path.resolve(raw.upstream_ca_cert),
            keyFile: path.resolve(raw.upstream_ca_key),
            bundleFile: raw.upstream_bundle === undefined ? undefined : path.resolve(raw.upstream_bundle),
          })
        : undefined,
    logLevel,
    agentSignRate: rate,
    agentSignBurst: burst,
    globalSignRate: globalRate,
    globalSignBurst: globalBurst,
    bundleEndpointAddress: raw.bundle_endpoint_address,
    bundleEndpointWebCert,
    bundleRefreshHintSeconds: bundleRefreshHint(raw.bundle_endpoint_refresh_hint, { rootActivationDelayMs, rootTtlMs, intermediateTtlMs, jwtKeyTtlMs, maxJwtSvidTtlMs }),
    federatesWith: compileRelationships(raw.federates_with, trustDomain),
    healthChecks,
  });
}

const DEFAULT_BIND_ADDRESS = SERVER_DEFAULTS.bind_address;

/**
 * The server's TCP listeners, the agent API first (it binds first): two on one port that cannot both bind are refused
 * by checkLiteralListeners here and, with host names resolved, by checkListenersResolved at start and in `validate`.
 */
export function tcpListeners(raw: Pick<RawServerConfig, 'bind_address' | 'bundle_endpoint_address'>, healthChecks?: HealthChecksConfig): ListenerSetting[] {
  const listeners: ListenerSetting[] = [
    { setting: 'bind_address', address: raw.bind_address ?? DEFAULT_BIND_ADDRESS, defaulted: raw.bind_address === undefined, bindsEveryAddress: true },
  ];
  if (raw.bundle_endpoint_address !== undefined) {
    listeners.push({ setting: 'bundle_endpoint_address', address: raw.bundle_endpoint_address, bindsEveryAddress: false });
  }
  if (healthChecks !== undefined) {
    listeners.push({ setting: 'health_checks.bind_port', address: healthListenerAddress(healthChecks.bindAddress, healthChecks.bindPort), bindsEveryAddress: false, prefersIpv4: true });
  }
  return listeners;
}

/** A listening address as grpc-js binds it: HOST:PORT, an empty host being every IPv4 address, IPv6 in brackets. */
function hostPort(address: string, setting: string): string {
  const { host, port } = parseHostPort(address, setting);
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/**
 * The refresh hint partners poll the own bundle at. A partner polling less often than twice in the publication lead
 * (publicationLeadMs) could see SVIDs under a key it has not fetched yet, so a longer hint is refused instead of
 * published.
 */
function bundleRefreshHint(raw: string | number | undefined, ttls: Parameters<typeof publicationLeadMs>[0]): number {
  const leadMs = publicationLeadMs(ttls);
  const f = formatDuration;
  const leadWhy = 'the least of root_activation_delay, half of root_ttl less intermediate_ttl, and half of jwt_key_ttl less max_jwt_svid_ttl';
  // The shortest hint is 1s, which needs twice that: a shorter lead leaves no hint partners could keep up with.
  if (leadMs < 2000) {
    throw invalidArgument(
      `a new root or JWT key would be published only ${f(leadMs)} before it is used (${leadWhy}), so federation partners could not fetch it in time ` +
        'at any refresh hint (1s at least): raise root_activation_delay, root_ttl or jwt_key_ttl',
    );
  }
  // Unset: five minutes (SPIRE's default too), or less where the CA publishes its new keys sooner than that.
  if (raw === undefined) return Math.max(1, Math.min(SERVER_DEFAULTS.bundle_endpoint_refresh_hint, Math.floor(leadMs / 2000)));
  const hintMs = configDuration(raw, 'bundle_endpoint_refresh_hint');
  if (hintMs < 1000 || hintMs % 1000 !== 0) throw invalidArgument(`bundle_endpoint_refresh_hint (${f(hintMs)}) must be a whole number of seconds, at least 1s`);
  if (hintMs > leadMs / 2) {
    throw invalidArgument(
      `bundle_endpoint_refresh_hint (${f(hintMs)}) is longer than half the time a new root or JWT key is published before it is used (${f(leadMs)}: ${leadWhy}): ` +
        `partners polling that seldom could miss it; lower the hint to ${f(Math.floor(leadMs / 2000) * 1000)} or less`,
    );
  }
  return hintMs / 1000;
}

/** https_web serving: both files or neither, and only for an endpoint that is served. */
function compileWebCert(raw: RawServerConfig): ServingCertFiles | undefined {
  const { bundle_endpoint_cert_file: certFile, bundle_endpoint_key_file: keyFile } = raw;
  if (certFile === undefined && keyFile === undefined) {
    if (raw.bundle_endpoint_cert_sync_interval !== undefined) throw invalidArgument('bundle_endpoint_cert_sync_interval needs bundle_endpoint_cert_file and bundle_endpoint_key_file');
    return undefined;
  }
  if (certFile === undefined || keyFile === undefined) {
    throw invalidArgument('--bundle-endpoint-cert-file and --bundle-endpoint-key-file must be given together');
  }
  if (raw.bundle_endpoint_address === undefined) {
    throw invalidArgument('--bundle-endpoint-cert-file serves the bundle endpoint under a web PKI certificate: give --bundle-endpoint-address too');
  }
  return Object.freeze({
    certFile: path.resolve(certFile),
    keyFile: path.resolve(keyFile),
    syncIntervalMs: configDuration(raw.bundle_endpoint_cert_sync_interval ?? SERVER_DEFAULTS.bundle_endpoint_cert_sync_interval, 'bundle_endpoint_cert_sync_interval'),
  });
}
