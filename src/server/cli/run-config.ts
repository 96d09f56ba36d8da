import { parseArgs, type FlagSpec } from '../../common/cli/args.js';
import { compileServerConfig, readConfigFile, DEFAULT_ADMIN_SOCKET, SERVER_DEFAULTS, type RawServerConfig, type ServerConfig } from '../config.js';
import { SPIRE_KEYS_NOT_SUPPORTED } from '../spire-keys-not-supported.js';
import { configuredLogLevel, DEFAULT_LOG_LEVEL, LOG_LEVEL_NAMES } from '../../common/log.js';
import { namingFlags } from '../../common/cli/flag-origin.js';
import { EXPAND_ENV_NOT_SUPPORTED } from '../../common/config-file.js';
import { formatDuration } from '../../common/duration.js';

/** The flags of `meshid-server run` (and `validate`, which checks what `run` would start with). */
export const RUN_FLAGS: readonly FlagSpec[] = [
  { name: 'config', type: 'string', valueName: 'FILE', description: 'JSON config file (flags override it)' },
  { name: 'trust-domain', aliases: ['trustDomain'], type: 'string', valueName: 'TD', description: 'Trust domain, e.g. example.org' },
  { name: 'data-dir', aliases: ['dataDir'], type: 'string', valueName: 'DIR', description: `Data directory (default ${SERVER_DEFAULTS.data_dir})` },
  { name: 'bind-address', aliases: ['bindAddress'], type: 'string', valueName: 'HOST:PORT', description: `Agent API address, mTLS (default ${SERVER_DEFAULTS.bind_address})` },
  { name: 'admin-socket', aliases: ['socketPath'], type: 'string', valueName: 'PATH', description: `Admin API Unix socket (default ${DEFAULT_ADMIN_SOCKET})` },
  { name: 'datacenter', type: 'strings', valueName: 'NAME', description: `A datacenter with its own intermediate CA (default ${SERVER_DEFAULTS.datacenter})` },
  { name: 'ca-key-type', type: 'string', choices: ['ec-p256', 'ec-p384', 'rsa-2048'], description: `CA key type (default ${SERVER_DEFAULTS.ca_key_type})` },
  { name: 'default-x509-svid-ttl', aliases: ['x509SVIDTTL'], type: 'string', valueName: 'DURATION', description: `Default X.509-SVID TTL (default ${SERVER_DEFAULTS.default_x509_svid_ttl})` },
  { name: 'max-x509-svid-ttl', type: 'string', valueName: 'DURATION', description: 'Longest X.509-SVID TTL an entry may ask for (default: --default-x509-svid-ttl)' },
  { name: 'default-jwt-svid-ttl', aliases: ['jwtSVIDTTL'], type: 'string', valueName: 'DURATION', description: `Default JWT-SVID TTL (default ${SERVER_DEFAULTS.default_jwt_svid_ttl})` },
  { name: 'max-jwt-svid-ttl', type: 'string', valueName: 'DURATION', description: 'Longest JWT-SVID TTL an entry may ask for (default: --default-jwt-svid-ttl)' },
  { name: 'intermediate-ttl', type: 'string', valueName: 'DURATION', description: `Datacenter intermediate CA TTL (default ${SERVER_DEFAULTS.intermediate_ttl})` },
  { name: 'root-ttl', type: 'string', valueName: 'DURATION', description: `Root CA TTL (default ${SERVER_DEFAULTS.root_ttl})` },
  { name: 'join-token-ttl', type: 'string', valueName: 'DURATION', description: `Default join token TTL (default ${SERVER_DEFAULTS.join_token_ttl})` },
  { name: 'upstream-ca-cert', type: 'string', valueName: 'FILE', description: 'Operator-supplied CA certificate (PEM) that signs the intermediates instead of a root meshid makes' },
  { name: 'upstream-ca-key', type: 'string', valueName: 'FILE', description: 'Private key of --upstream-ca-cert (PEM)' },
  {
    name: 'upstream-bundle',
    type: 'string',
    valueName: 'FILE',
    description: 'Roots of the PKI that issued --upstream-ca-cert (PEM), published as the bundle; the cert file may hold its issuers after it',
  },
  {
    name: 'bundle-endpoint-address',
    type: 'string',
    valueName: 'HOST:PORT',
    description: 'Serve the SPIFFE bundle endpoint there (https_spiffe, under the server SVID, unless the two flags below say https_web); off by default',
  },
  {
    name: 'bundle-endpoint-cert-file',
    type: 'string',
    valueName: 'FILE',
    description: 'https_web: the web PKI certificate chain (PEM, leaf first) the bundle endpoint presents; reloaded when it changes',
  },
  { name: 'bundle-endpoint-key-file', type: 'string', valueName: 'FILE', description: 'https_web: the private key of --bundle-endpoint-cert-file (PEM)' },
  {
    name: 'bundle-endpoint-refresh-hint',
    type: 'string',
    valueName: 'DURATION',
    description: `How often partners should poll this trust domain's bundle (its spiffe_refresh_hint; default ${formatDuration(SERVER_DEFAULTS.bundle_endpoint_refresh_hint * 1000)}, less when the CA publishes new keys sooner)`,
  },
  { name: 'log-level', aliases: ['logLevel'], type: 'string', choices: LOG_LEVEL_NAMES, choicesAnyCase: true, description: `Log level (default: log_level in --config, else $MESHID_LOG_LEVEL, else ${DEFAULT_LOG_LEVEL})` },
];

/** spire-server run flags meshid has no counterpart for: a SPIRE command line gets the meshid way, not "unknown flag". */
const SPIRE_FLAGS_NOT_SUPPORTED: Readonly<Record<string, string>> = {
  serverPort: 'give the port in --bind-address (-bindAddress), as host:port, e.g. 0.0.0.0:8081',
  expandEnv: EXPAND_ENV_NOT_SUPPORTED,
  // Said as for the config keys they set.
  logFile: SPIRE_KEYS_NOT_SUPPORTED.log_file,
  logFormat: SPIRE_KEYS_NOT_SUPPORTED.log_format,
  logSourceLocation: SPIRE_KEYS_NOT_SUPPORTED.log_source_location,
};

const FLAG_TO_KEY: Record<string, keyof RawServerConfig> = {
  'trust-domain': 'trust_domain',
  'data-dir': 'data_dir',
  'bind-address': 'bind_address',
  'admin-socket': 'admin_socket',
  'ca-key-type': 'ca_key_type',
  'default-x509-svid-ttl': 'default_x509_svid_ttl',
  'max-x509-svid-ttl': 'max_x509_svid_ttl',
  'default-jwt-svid-ttl': 'default_jwt_svid_ttl',
  'max-jwt-svid-ttl': 'max_jwt_svid_ttl',
  'intermediate-ttl': 'intermediate_ttl',
  'root-ttl': 'root_ttl',
  'join-token-ttl': 'join_token_ttl',
  'upstream-ca-cert': 'upstream_ca_cert',
  'upstream-ca-key': 'upstream_ca_key',
  'upstream-bundle': 'upstream_bundle',
  'bundle-endpoint-address': 'bundle_endpoint_address',
  'bundle-endpoint-cert-file': 'bundle_endpoint_cert_file',
  'bundle-endpoint-key-file': 'bundle_endpoint_key_file',
  'bundle-endpoint-refresh-hint': 'bundle_endpoint_refresh_hint',
  'log-level': 'log_level',
};

/**
 * The server configuration `run` starts with: the config file (if any), flags winning, the log level from the
 * environment as a last resort; compiled and checked (throws MeshidError naming what to change). Undefined for --help.
 */
export function serverConfigFrom(argv: readonly string[], env: NodeJS.ProcessEnv): ServerConfig | undefined {
  const args = parseArgs(argv, RUN_FLAGS, { notSupported: SPIRE_FLAGS_NOT_SUPPORTED });
  if (args.help) return undefined;
  const configFile = args.string('config');
  const setByFlags = new Set(Object.entries(FLAG_TO_KEY).flatMap(([flag, key]) => (args.string(flag) === undefined ? [] : [key])));
  const raw: RawServerConfig = configFile ? readConfigFile(configFile, setByFlags) : {};
  const fromFlags = new Map<string, string>();
  for (const [flag, key] of Object.entries(FLAG_TO_KEY)) {
    const v = args.string(flag);
    if (v === undefined) continue;
    (raw as Record<string, unknown>)[key] = v;
    fromFlags.set(key, flag);
  }
  const dcs = args.strings('datacenter');
  if (dcs.length > 0) {
    raw.datacenters = dcs;
    fromFlags.set('datacenters', 'datacenter');
  }
  // Checked here, where its origin is known: compiled as log_level, a bad value would send the operator to the config.
  const envLevel = env['MESHID_LOG_LEVEL'];
  if (raw.log_level === undefined && envLevel !== undefined) raw.log_level = configuredLogLevel(envLevel, 'MESHID_LOG_LEVEL');
  return namingFlags(fromFlags, () => compileServerConfig(raw));
}
