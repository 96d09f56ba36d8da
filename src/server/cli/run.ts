import { formatHelp, parseArgs, type FlagSpec } from '../../common/cli/args.js';
import { createLogger } from '../../common/log.js';
import { MeshidError } from '../../common/errors.js';
import { errorLine } from '../../common/cli/output.js';
import { compileServerConfig, readConfigFile, DEFAULT_ADMIN_SOCKET, type RawServerConfig } from '../config.js';
import { MeshidServer } from '../server.js';

const FLAGS: FlagSpec[] = [
  { name: 'config', type: 'string', valueName: 'FILE', description: 'JSON config file (flags override it)' },
  { name: 'trust-domain', aliases: ['trustDomain'], type: 'string', valueName: 'TD', description: 'Trust domain, e.g. example.org' },
  { name: 'data-dir', aliases: ['dataDir'], type: 'string', valueName: 'DIR', description: 'Data directory (default .meshid/server)' },
  { name: 'bind-address', aliases: ['bindAddress'], type: 'string', valueName: 'HOST:PORT', description: 'Agent API address, mTLS (default 0.0.0.0:8081)' },
  { name: 'admin-socket', aliases: ['socketPath'], type: 'string', valueName: 'PATH', description: `Admin API Unix socket (default ${DEFAULT_ADMIN_SOCKET})` },
  { name: 'datacenter', type: 'strings', valueName: 'NAME', description: 'A datacenter with its own intermediate CA (default dc1)' },
  { name: 'ca-key-type', type: 'string', choices: ['ec-p256', 'ec-p384', 'rsa-2048'], description: 'CA key type (default ec-p256)' },
  { name: 'default-x509-svid-ttl', aliases: ['x509SVIDTTL'], type: 'string', valueName: 'DURATION', description: 'Default X.509-SVID TTL (24h)' },
  { name: 'max-x509-svid-ttl', type: 'string', valueName: 'DURATION', description: 'Longest X.509-SVID TTL an entry may ask for (= default)' },
  { name: 'default-jwt-svid-ttl', aliases: ['jwtSVIDTTL'], type: 'string', valueName: 'DURATION', description: 'Default JWT-SVID TTL (5m)' },
  { name: 'max-jwt-svid-ttl', type: 'string', valueName: 'DURATION', description: 'Longest JWT-SVID TTL an entry may ask for (= default)' },
  { name: 'intermediate-ttl', type: 'string', valueName: 'DURATION', description: 'Datacenter intermediate CA TTL (7d)' },
  { name: 'root-ttl', type: 'string', valueName: 'DURATION', description: 'Root CA TTL (3650d)' },
  { name: 'join-token-ttl', type: 'string', valueName: 'DURATION', description: 'Default join token TTL (600s)' },
  { name: 'upstream-ca-cert', type: 'string', valueName: 'FILE', description: 'Operator-supplied CA certificate (PEM) that signs the intermediates instead of a root meshid makes' },
  { name: 'upstream-ca-key', type: 'string', valueName: 'FILE', description: 'Private key of --upstream-ca-cert (PEM)' },
  {
    name: 'upstream-bundle',
    type: 'string',
    valueName: 'FILE',
    description: 'Roots of the PKI that issued --upstream-ca-cert (PEM), published as the bundle; the cert file may hold its issuers after it',
  },
  { name: 'log-level', aliases: ['logLevel'], type: 'string', choices: ['trace', 'debug', 'info', 'warn', 'error'], description: 'Log level (info)' },
];

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
  'log-level': 'log_level',
};

/** `meshid-server run`: starts the server and runs until SIGINT/SIGTERM. */
export async function runServerCommand(argv: string[]): Promise<number> {
  let server: MeshidServer | undefined;
  try {
    const args = parseArgs(argv, FLAGS);
    if (args.help) {
      process.stdout.write(formatHelp('meshid-server run [flags]', 'Runs meshid-server for one trust domain.', FLAGS));
      return 0;
    }
    const configFile = args.string('config');
    const raw: RawServerConfig = configFile ? readConfigFile(configFile) : {};
    for (const [flag, key] of Object.entries(FLAG_TO_KEY)) {
      const v = args.string(flag);
      if (v !== undefined) (raw as Record<string, unknown>)[key] = v;
    }
    const dcs = args.strings('datacenter');
    if (dcs.length > 0) raw.datacenters = dcs;
    raw.log_level ??= process.env['MESHID_LOG_LEVEL'];
    const config = compileServerConfig(raw);
    const log = createLogger({ name: 'meshid-server', level: config.logLevel });
    server = await MeshidServer.start({ config, log });
    const running = server;
    await new Promise<void>((resolve) => {
      const stop = (signal: string): void => {
        log.info({ signal }, 'shutting down');
        resolve();
      };
      process.once('SIGINT', () => stop('SIGINT'));
      process.once('SIGTERM', () => stop('SIGTERM'));
    });
    await running.stop();
    return 0;
  } catch (err) {
    process.stderr.write(`${errorLine(err)}\n`);
    if (!(err instanceof MeshidError) && process.env['MESHID_DEBUG']) process.stderr.write(`${(err as Error).stack}\n`);
    await server?.stop().catch(() => undefined);
    return 1;
  }
}
