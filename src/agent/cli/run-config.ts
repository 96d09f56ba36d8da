import { parseArgs, type FlagSpec } from '../../common/cli/args.js';
import {
  compileAgentConfig,
  DATACENTER_FROM_JOIN_TOKEN,
  DEFAULT_AGENT_DATA_DIR,
  DEFAULT_AGENT_SOCKET_PATH,
  readAgentConfigFile,
  SPIRE_KEYS_NOT_SUPPORTED,
  type AgentConfig,
  type RawAgentConfig,
} from '../config.js';
import { EXPAND_ENV_NOT_SUPPORTED } from '../../common/config-file.js';
import { configuredLogLevel, DEFAULT_LOG_LEVEL, LOG_LEVEL_NAMES } from '../../common/log.js';

/** Flags of `meshid-agent run`, with spire-agent's spellings as aliases. */
export const RUN_FLAGS: readonly FlagSpec[] = [
  { name: 'config', type: 'string', valueName: 'FILE', description: 'JSON config file (flags override it; unknown keys are errors)' },
  { name: 'server-address', aliases: ['serverAddress'], type: 'string', valueName: 'HOST:PORT', description: "meshid-server's agent API address" },
  { name: 'trust-bundle', aliases: ['trustBundle'], type: 'string', valueName: 'FILE', description: 'PEM roots of the trust domain (meshid-server bundle show), to authenticate the server on first attestation; after a restart, when newer than the agent state in the data dir (a root change it missed) or that state is lost, until the server sends its bundle' },
  { name: 'trust-domain', aliases: ['trustDomain'], type: 'string', valueName: 'TD', description: "Trust domain (default: read from the trust bundle's roots)" },
  { name: 'join-token', aliases: ['joinToken'], type: 'string', valueName: 'TOKEN', description: 'Single-use join token (meshid-server token generate); needed only until the agent has attested' },
  { name: 'join-token-file', aliases: ['joinTokenFile'], type: 'string', valueName: 'FILE', description: 'A file holding the join token (the value token generate prints after "Token: ", or all it prints), read at start; keeps it off the command line' },
  { name: 'insecure-bootstrap', aliases: ['insecureBootstrap'], type: 'bool', description: 'DEVELOPMENT ONLY: attest without authenticating the server when there is no trust bundle' },
  { name: 'socket-path', aliases: ['socketPath'], type: 'string', valueName: 'PATH', description: `Workload API / SDS Unix socket, a path or unix:///path URI (default ${DEFAULT_AGENT_SOCKET_PATH})` },
  { name: 'data-dir', aliases: ['dataDir'], type: 'string', valueName: 'DIR', description: `Data directory for the agent's state and keys (default ${DEFAULT_AGENT_DATA_DIR})` },
  { name: 'log-level', aliases: ['logLevel'], type: 'string', choices: LOG_LEVEL_NAMES, choicesAnyCase: true, description: `Log level (default: log_level in --config, else $MESHID_LOG_LEVEL, else ${DEFAULT_LOG_LEVEL})` },
  {
    name: 'allow-unauthenticated-verifiers',
    aliases: ['allowUnauthenticatedVerifiers'],
    type: 'bool',
    description: 'Serve the trust bundle to callers no entry matches (Workload API bundle RPCs, SDS validation contexts)',
  },
  { name: 'disable-workload-api', aliases: ['disableWorkloadAPI'], type: 'bool', description: 'Serve only Envoy SDS on the socket, not the SPIFFE Workload API' },
  { name: 'disable-sds-api', aliases: ['disableSDSAPI'], type: 'bool', description: 'Serve only the SPIFFE Workload API on the socket, not Envoy SDS' },
];

/**
 * spire-agent run flags meshid has no counterpart for: a SPIRE command line gets the meshid way, not "unknown flag".
 * Also meshid-server's --datacenter, which an agent takes from its join token.
 */
const FLAGS_NOT_SUPPORTED: Readonly<Record<string, string>> = {
  datacenter: DATACENTER_FROM_JOIN_TOKEN,
  serverPort: 'give the port in --server-address (-serverAddress), as host:port, e.g. meshid-server:8081',
  trustBundleUrl: 'save the bundle first (meshid-server bundle show > bundle.pem on the server) and pass --trust-bundle bundle.pem',
  trustBundleFormat: '--trust-bundle takes PEM certificates (SPIRE\'s "pem"), as `meshid-server bundle show` prints them: remove it',
  expandEnv: EXPAND_ENV_NOT_SUPPORTED,
  // Said as for the config keys they set.
  logFile: SPIRE_KEYS_NOT_SUPPORTED.log_file,
  logFormat: SPIRE_KEYS_NOT_SUPPORTED.log_format,
  logSourceLocation: SPIRE_KEYS_NOT_SUPPORTED.log_source_location,
  retryBootstrap: SPIRE_KEYS_NOT_SUPPORTED.retry_bootstrap,
  rebootstrapMode: SPIRE_KEYS_NOT_SUPPORTED.rebootstrap_mode,
  rebootstrapDelay: SPIRE_KEYS_NOT_SUPPORTED.rebootstrap_delay,
};

const FLAG_TO_KEY: Record<string, keyof RawAgentConfig> = {
  'server-address': 'server_address',
  'trust-bundle': 'trust_bundle_path',
  'trust-domain': 'trust_domain',
  'join-token': 'join_token',
  'join-token-file': 'join_token_file',
  'socket-path': 'socket_path',
  'data-dir': 'data_dir',
  'log-level': 'log_level',
};

/** Builds the raw config from the file (if any) and the flags, flags winning. */
export function rawConfigFrom(argv: readonly string[]): { raw: RawAgentConfig; help: boolean; trustDomainSetting: string } {
  const args = parseArgs(argv, RUN_FLAGS, { notSupported: FLAGS_NOT_SUPPORTED });
  if (args.help) return { raw: {}, help: true, trustDomainSetting: '--trust-domain' };
  const file = args.string('config');
  const trustDomainSetting = args.string('trust-domain') !== undefined || file === undefined ? '--trust-domain' : `trust_domain in ${file}`;
  const setByFlags = new Set(Object.entries(FLAG_TO_KEY).flatMap(([flag, key]) => (args.string(flag) === undefined ? [] : [key])));
  const raw: RawAgentConfig = file !== undefined ? readAgentConfigFile(file, setByFlags) : {};
  for (const [flag, key] of Object.entries(FLAG_TO_KEY)) {
    const v = args.string(flag);
    if (v !== undefined) (raw as Record<string, unknown>)[key] = v;
  }
  const insecure = args.bool('insecure-bootstrap');
  if (insecure !== undefined) raw.insecure_bootstrap = insecure;
  const verifiers = args.bool('allow-unauthenticated-verifiers');
  if (verifiers !== undefined) raw.allow_unauthenticated_verifiers = verifiers;
  const noWorkloadApi = args.bool('disable-workload-api');
  if (noWorkloadApi !== undefined) raw.disable_workload_api = noWorkloadApi;
  const noSds = args.bool('disable-sds-api');
  if (noSds !== undefined) raw.disable_sds_api = noSds;
  return { raw, help: false, trustDomainSetting };
}

/**
 * The agent configuration `run` starts with (and `validate` checks): rawConfigFrom, the log level from the environment
 * as a last resort, compiled (throws MeshidError naming what to change). Undefined for --help.
 */
export function agentConfigFrom(argv: readonly string[], env: NodeJS.ProcessEnv): AgentConfig | undefined {
  const { raw, help, trustDomainSetting } = rawConfigFrom(argv);
  if (help) return undefined;
  // Checked here, where its origin is known: compiled as log_level, a bad value would send the operator to the config.
  const envLevel = env['MESHID_LOG_LEVEL'];
  if (raw.log_level === undefined && envLevel !== undefined) raw.log_level = configuredLogLevel(envLevel, 'MESHID_LOG_LEVEL');
  return compileAgentConfig(raw, trustDomainSetting);
}
