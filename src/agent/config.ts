import fs from 'node:fs';
import path from 'node:path';
import { invalidArgument } from '../common/errors.js';
import { configuredTrustDomain } from '../common/spiffe/spiffe-id.js';
import { DEFAULT_JWT_CACHE_SIZE } from './cache/jwt-svid-cache.js';
import { DEFAULT_SOCKET_PATH, socketPathSetting } from './cli/endpoint-socket.js';
import { checkConfigKeys, readJsonConfigObject, refuseEmptyStrings, type ConfigKeyType } from '../common/config-file.js';
import { configuredLogLevel, type LogLevel } from '../common/log.js';
import { resolveSdsOptions, type ResolvedSdsOptions } from './sds/sds-options.js';
import { DEFAULT_MAX_CONNECTIONS_PER_UID } from './endpoints/uds-server.js';
import { DEFAULT_MAX_CALLS_PER_UID } from './endpoints/uid-call-limit.js';
import { compileHealthChecks, HEALTH_CHECKS_KEYS, type HealthChecksConfig, type RawHealthChecksConfig } from '../common/health/health-checks-config.js';
import { looksLikeCredential } from '../common/cli/credential-like.js';
import { joinTokenInText, ONE_TOKEN_EXPECTED } from '../common/join-token-text.js';
import { checkSocketPathLength } from '../common/socket-file.js';
import { parseHostPort } from '../common/host-port.js';
import { NEW_JOIN_TOKEN } from './join-token-ways.js';

/**
 * meshid-agent configuration: a JSON file and flags (flags override the file) are validated and compiled into a
 * frozen AgentConfig. Unknown keys are errors that name the key and the known ones.
 */
export interface AgentConfig {
  /** host:port of meshid-server's agent API. */
  readonly serverAddress: string;
  /** PEM file with the trust domain's root certificates (meshid-server bundle show), for the first attestation. */
  readonly trustBundlePath: string | undefined;
  /** Set explicitly, or undefined: then read from the bundle roots' URI SAN or the stored state. */
  readonly trustDomain: string | undefined;
  /** Where trustDomain was set, as messages name it (`--trust-domain`, `trust_domain in FILE`): an operator edits that. */
  readonly trustDomainSetting: string;
  readonly joinToken: string | undefined;
  /** Which of the two APIs the workload socket serves (SPIRE's disable_workload_api and disable_sds_api); at least one. */
  readonly servesWorkloadApi: boolean;
  readonly servesSds: boolean;
  /** Attest without authenticating the server when there is no trust bundle. Development only. */
  readonly insecureBootstrap: boolean;
  readonly socketPath: string;
  readonly dataDir: string;
  readonly logLevel: LogLevel;
  readonly jwtSvidCacheSize: number;
  /** Open workload-socket connections one uid may hold (UdsServerOptions.maxConnectionsPerUid). */
  readonly maxConnectionsPerUid: number;
  /** Workload-socket calls one uid may have open at once (uid-call-limit.ts). */
  readonly maxCallsPerUid: number;
  /** Claims besides sub, aud and exp that ValidateJWTSVID returns of foreign trust domains' tokens. */
  readonly allowedForeignJwtClaims: readonly string[];
  /** Callers without an entry get the own trust domain's bundle (Workload API bundle RPCs, SDS validation contexts). */
  readonly allowUnauthenticatedVerifiers: boolean;
  readonly sds: ResolvedSdsOptions;
  /** The HTTP health check listener (SPIRE's `health_checks`); undefined when off, the default. */
  readonly healthChecks: HealthChecksConfig | undefined;
}

/** The SDS settings of the config file, named as in SPIRE's agent `sds` block. */
export interface RawSdsConfig {
  default_svid_name?: string;
  default_bundle_name?: string;
  default_all_bundles_name?: string;
  disable_spiffe_cert_validation?: boolean;
}

/** Raw settings as they appear in the JSON config file (snake_case) or come from flags. */
export interface RawAgentConfig {
  server_address?: string;
  trust_bundle_path?: string;
  trust_domain?: string;
  join_token?: string;
  /** A file holding the join token (SPIRE's join_token_file), so that the token is on no command line. */
  join_token_file?: string;
  insecure_bootstrap?: boolean;
  socket_path?: string;
  data_dir?: string;
  log_level?: string;
  jwt_svid_cache_size?: number;
  /** SPIRE's name for jwt_svid_cache_size. */
  jwt_svid_cache_max_size?: number;
  max_connections_per_uid?: number;
  max_calls_per_uid?: number;
  allowed_foreign_jwt_claims?: string[];
  allow_unauthenticated_verifiers?: boolean;
  disable_workload_api?: boolean;
  disable_sds_api?: boolean;
  sds?: RawSdsConfig;
  health_checks?: RawHealthChecksConfig;
}

export const KNOWN_KEYS: Record<keyof RawAgentConfig, ConfigKeyType> = {
  server_address: 'string',
  trust_bundle_path: 'string',
  trust_domain: 'string',
  join_token: 'string',
  join_token_file: 'string',
  insecure_bootstrap: 'boolean',
  socket_path: 'string',
  data_dir: 'string',
  log_level: 'string',
  jwt_svid_cache_size: 'number',
  jwt_svid_cache_max_size: 'number',
  max_connections_per_uid: 'number',
  max_calls_per_uid: 'number',
  allowed_foreign_jwt_claims: 'array',
  allow_unauthenticated_verifiers: 'boolean',
  disable_workload_api: 'boolean',
  disable_sds_api: 'boolean',
  sds: 'object',
  health_checks: 'object',
};

export const SDS_KEYS: Record<keyof RawSdsConfig, ConfigKeyType> = {
  default_svid_name: 'string',
  default_bundle_name: 'string',
  default_all_bundles_name: 'string',
  disable_spiffe_cert_validation: 'boolean',
};

/**
 * Said for an agent `datacenter` setting (config key or flag): the agent's datacenter is the one its join token was
 * generated for, which picks the intermediate that signs its SVIDs; the agent has no say in it.
 */
export const DATACENTER_FROM_JOIN_TOKEN =
  'the join token decides the agent\'s datacenter: generate it for that datacenter (`meshid-server token generate --datacenter <dc>`) and remove the setting';

const SAVE_THE_BUNDLE = 'save the bundle first (`meshid-server bundle show > bundle.pem` on the server) and set trust_bundle_path';
const ATTESTS_AGAIN_WITH_A_TOKEN =
  `an agent whose SVID the server no longer accepts attests again only when restarted with ${NEW_JOIN_TOKEN}, and keeps serving its ` +
  'cached SVIDs meanwhile: remove it';

/**
 * spire-agent settings meshid has no counterpart for, with what to do instead: a SPIRE config translated to JSON is
 * refused with the meshid way, not "unknown key". The blocks of SPIRE's layout (plugins, telemetry) count as keys.
 */
export const SPIRE_KEYS_NOT_SUPPORTED = {
  server_port: 'put the port in server_address, as host:port (e.g. "meshid-server:8081")',
  trust_bundle_url: SAVE_THE_BUNDLE,
  trust_bundle_format: 'trust_bundle_path takes PEM certificates (SPIRE\'s "pem"), as `meshid-server bundle show` prints them: remove it',
  trust_bundle_unix_socket: SAVE_THE_BUNDLE,
  trust_bundle_spiffe_workload_api: SAVE_THE_BUNDLE,
  rebootstrap_mode: ATTESTS_AGAIN_WITH_A_TOKEN,
  rebootstrap_delay: ATTESTS_AGAIN_WITH_A_TOKEN,
  availability_target: "SVIDs are renewed at about half their lifetime (12 h of a 24 h SVID are left to ride out an outage); set the entries' TTLs instead: remove it",
  x509_svid_cache_max_size: 'the agent signs and keeps an X509-SVID for every entry it may serve (no LRU cache): remove it',
  log_selectors: "a refused caller's selectors are logged in full (unix selectors: ids, user and group names, executable path and digest), with no filter: remove it",
  log_file: 'the agent logs to stderr: redirect it to a file, or let systemd or the container runtime collect it',
  log_format: 'the agent writes JSON lines, or readable lines when stderr is a terminal',
  log_source_location: 'log lines name their subsystem, not a source line: remove it',
  retry_bootstrap: "the agent retries its first attestation while the server cannot be reached and stops when the server refuses it, as SPIRE's does since retry_bootstrap went: remove it",
  admin_socket_path: 'meshid-agent has no admin API (no Delegated Identity API): remove it',
  authorized_delegates: 'meshid-agent has no Delegated Identity API: remove it',
  workload_x509_svid_key_type: 'workload X509-SVID keys are always EC P-256 (SPIRE\'s default): remove it',
  experimental: 'meshid has no experimental settings: remove the block',
  profiling_enabled: 'profile with node --cpu-prof or --heap-prof in NODE_OPTIONS instead',
  profiling_port: 'profile with node --cpu-prof or --heap-prof in NODE_OPTIONS instead',
  profiling_freq: 'profile with node --cpu-prof or --heap-prof in NODE_OPTIONS instead',
  profiling_names: 'profile with node --cpu-prof or --heap-prof in NODE_OPTIONS instead',
  plugins: "meshid-agent's plugins are built in (join_token node attestation, its key in data_dir, the unix workload attestor): remove the block",
  telemetry: 'meshid exports no metrics yet: remove the block',
} as const satisfies Readonly<Record<string, string>>;

export const DEFAULT_AGENT_SOCKET_PATH = DEFAULT_SOCKET_PATH;
export const DEFAULT_AGENT_DATA_DIR = '.meshid/agent';

/** Reads a JSON config file; an "agent" top-level object is accepted too, for room to grow. */
export function readAgentConfigFile(file: string, setByFlags?: ReadonlySet<string>): RawAgentConfig {
  const obj = readJsonConfigObject(file, 'agent');
  // A meshid setting, but the server's: not told as an unknown key, nor as SPIRE's.
  if (Object.hasOwn(obj, 'datacenter')) throw invalidArgument(`config file ${file}: "datacenter" is not an agent setting: ${DATACENTER_FROM_JOIN_TOKEN}`);
  checkConfigKeys(obj, KNOWN_KEYS, `config file ${file}`, SPIRE_KEYS_NOT_SUPPORTED);
  refuseEmptyStrings(obj, `config file ${file}`, setByFlags);
  if (obj['sds'] !== undefined) {
    checkConfigKeys(obj['sds'] as Record<string, unknown>, SDS_KEYS, `config file ${file}: sds`);
    refuseEmptyStrings(obj['sds'] as Record<string, unknown>, `config file ${file}: sds`);
  }
  if (obj['health_checks'] !== undefined) checkConfigKeys(obj['health_checks'] as Record<string, unknown>, HEALTH_CHECKS_KEYS, `config file ${file}: health_checks`);
  return obj as RawAgentConfig;
}

/**
 * Validates raw settings and compiles them into a frozen AgentConfig; throws a MeshidError naming what to change.
 * `trustDomainSetting` names where raw.trust_domain came from (`--trust-domain`, `trust_domain in FILE`).
 */
export function compileAgentConfig(raw: RawAgentConfig, trustDomainSetting = 'trust_domain'): AgentConfig {
  if (raw.server_address === undefined || raw.server_address === '') {
    throw invalidArgument('server address is required: pass --server-address host:port or set server_address');
  }
  parseHostPort(raw.server_address, 'server_address (--server-address)', 'dial');
  const serverAddress = raw.server_address;
  if (raw.trust_bundle_path !== undefined && raw.insecure_bootstrap === true) {
    throw invalidArgument('--trust-bundle and --insecure-bootstrap exclude each other: with a trust bundle the server is always authenticated');
  }
  const logLevel = configuredLogLevel(raw.log_level, 'log level');
  if (raw.jwt_svid_cache_size !== undefined && raw.jwt_svid_cache_max_size !== undefined) {
    throw invalidArgument('jwt_svid_cache_size and jwt_svid_cache_max_size (SPIRE\'s name) are one setting: keep one of them');
  }
  const jwtSvidCacheSize = countSetting(
    raw.jwt_svid_cache_size ?? raw.jwt_svid_cache_max_size ?? DEFAULT_JWT_CACHE_SIZE,
    raw.jwt_svid_cache_max_size !== undefined ? 'jwt_svid_cache_max_size' : 'jwt_svid_cache_size',
    MAX_JWT_SVID_CACHE_SIZE,
  );
  const maxConnectionsPerUid = countSetting(raw.max_connections_per_uid ?? DEFAULT_MAX_CONNECTIONS_PER_UID, 'max_connections_per_uid', MAX_CONNECTIONS_PER_UID_SETTING);
  const maxCallsPerUid = countSetting(raw.max_calls_per_uid ?? DEFAULT_MAX_CALLS_PER_UID, 'max_calls_per_uid', MAX_CALLS_PER_UID_SETTING);
  const joinToken = joinTokenSetting(raw);
  const servesWorkloadApi = raw.disable_workload_api !== true;
  const servesSds = raw.disable_sds_api !== true;
  if (!servesWorkloadApi && !servesSds) {
    throw invalidArgument('disable_workload_api and disable_sds_api are both set, so the workload socket would serve nothing: leave one of them off');
  }
  const allowedForeignJwtClaims = raw.allowed_foreign_jwt_claims ?? [];
  if (!allowedForeignJwtClaims.every((c) => typeof c === 'string' && c !== '')) {
    throw invalidArgument('allowed_foreign_jwt_claims must be a list of claim names, e.g. ["iss", "iat"]');
  }
  const sds = resolveSdsOptions({
    ...(raw.sds?.default_svid_name !== undefined ? { defaultSvidName: raw.sds.default_svid_name } : {}),
    ...(raw.sds?.default_bundle_name !== undefined ? { defaultBundleName: raw.sds.default_bundle_name } : {}),
    ...(raw.sds?.default_all_bundles_name !== undefined ? { defaultAllBundlesName: raw.sds.default_all_bundles_name } : {}),
    ...(raw.sds?.disable_spiffe_cert_validation !== undefined ? { disableSpiffeCertValidation: raw.sds.disable_spiffe_cert_validation } : {}),
    allowUnauthenticatedVerifiers: raw.allow_unauthenticated_verifiers ?? false,
  });
  return Object.freeze({
    serverAddress,
    trustBundlePath: raw.trust_bundle_path === undefined ? undefined : path.resolve(raw.trust_bundle_path),
    // The agent's own trust domain is one a meshid server issues in, so held to the server's rule: "example.org." passed
    // validate here and could never attest.
    trustDomain: raw.trust_domain === undefined ? undefined : configuredTrustDomain(raw.trust_domain, trustDomainSetting),
    trustDomainSetting,
    joinToken,
    servesWorkloadApi,
    servesSds,
    insecureBootstrap: raw.insecure_bootstrap ?? false,
    socketPath: checkSocketPathLength(socketPathSetting(raw.socket_path ?? DEFAULT_AGENT_SOCKET_PATH, '--socket-path, socket_path'), '--socket-path, socket_path'),
    dataDir: path.resolve(raw.data_dir ?? DEFAULT_AGENT_DATA_DIR),
    logLevel,
    jwtSvidCacheSize,
    maxConnectionsPerUid,
    maxCallsPerUid,
    allowedForeignJwtClaims: Object.freeze([...allowedForeignJwtClaims]),
    allowUnauthenticatedVerifiers: sds.allowUnauthenticatedVerifiers,
    sds,
    healthChecks: compileHealthChecks(raw.health_checks),
  });
}

/**
 * Upper bounds of the agent's count settings, hundreds of times their defaults or more, so no deployment meets them:
 * past them a setting bounds nothing. 1,000,000 cached JWT-SVIDs budget 8 GB (JWT_CACHE_CHARS_PER_TOKEN each); a
 * process cannot hold more than 1,048,576 descriptors (Linux's fs.nr_open default), so neither can a uid's
 * connections; 1,000,000 open calls of a uid hold ~7 GB (4,096 hold ~30 MB).
 */
export const MAX_JWT_SVID_CACHE_SIZE = 1_000_000;
export const MAX_CONNECTIONS_PER_UID_SETTING = 1_048_576;
export const MAX_CALLS_PER_UID_SETTING = 1_000_000;

/** A count setting: a whole number from 1 to `max`, refused naming the setting and its maximum. */
function countSetting(value: number, name: string, max: number): number {
  if (!Number.isSafeInteger(value) || value < 1) throw invalidArgument(`${name} must be a positive integer`);
  if (value > max) throw invalidArgument(`${name} (${value}) is more than it may be (at most ${max}): lower it`);
  return value;
}

/**
 * The join token, from join_token or from the file join_token_file names (read now, as spire-agent does: a token file
 * removed after the first attestation is an error at the next start, so drop the setting with the file). Never both:
 * which one would win is a guess the operator should not have to make.
 */
function joinTokenSetting(raw: RawAgentConfig): string | undefined {
  if (raw.join_token !== undefined && raw.join_token_file !== undefined) {
    throw invalidArgument('a join token and a join token file are both given (join_token or --join-token, join_token_file or --join-token-file): keep one of them');
  }
  if (raw.join_token_file === undefined) {
    if (raw.join_token !== undefined && raw.join_token.trim() === '') throw invalidArgument('the join token is empty');
    return raw.join_token?.trim();
  }
  const file = path.resolve(raw.join_token_file);
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    // The token itself given in place of its file's path: quoting the path would put the token in the log.
    if (code === 'ENOENT' && looksLikeCredential(raw.join_token_file)) {
      throw invalidArgument('join_token_file (--join-token-file) takes the path of a file holding the join token; what it was given names no file and looks like a token itself: put the token in a file, or pass it as join_token (--join-token)');
    }
    throw invalidArgument(`cannot read the join token file ${file} (${code ?? (err as Error).message}): check join_token_file or --join-token-file`, err);
  }
  const found = joinTokenInText(text);
  if ('token' in found) return found.token;
  if (found.problem === 'empty') throw invalidArgument(`the join token file ${file} is empty: put the token \`meshid-server token generate\` printed in it`);
  throw invalidArgument(`the join token file ${file} holds more than a join token (what it holds is not shown, as it may hold one): it ${ONE_TOKEN_EXPECTED}`);
}
