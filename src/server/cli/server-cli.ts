import fs from 'node:fs';
import path from 'node:path';
import { reportError, EXIT_FAILURE, type CliIo } from '../../common/cli/output.js';
import { formatGroupHelp, unknownCommand } from '../../common/cli/command.js';
import { packageRoot } from '../../common/paths.js';
import { agentCommand } from './agent.js';
import { bundleCommand } from './bundle.js';
import { caCommand } from './ca.js';
import { entryCommand } from './entry.js';
import { healthcheckCommand } from './healthcheck.js';
import { jwtCommand } from './jwt.js';
import { tokenCommand } from './token.js';
import { x509Command } from './x509.js';

type GroupCommand = (argv: string[], io: CliIo) => Promise<number>;

/** The top-level commands of meshid-server, shaped like spire-server's. */
const GROUPS: ReadonlyArray<{ name: string; summary: string; run: GroupCommand }> = [
  {
    name: 'run',
    summary: 'Runs the server',
    // Loaded only for `run`: it pulls in the datastore and CA, which the client commands never need.
    run: async (argv) => (await import('./run.js')).runServerCommand(argv),
  },
  { name: 'entry', summary: 'Manage registration entries (create, show, update, delete)', run: entryCommand },
  { name: 'token', summary: 'Generate join tokens for agents', run: tokenCommand },
  { name: 'bundle', summary: 'Show the own bundle; manage federated bundles (show, list, set, delete)', run: bundleCommand },
  { name: 'agent', summary: 'Manage attested agents (list, show, evict, ban)', run: agentCommand },
  { name: 'ca', summary: 'Show the certificate authorities', run: caCommand },
  { name: 'x509', summary: 'Mint X509-SVIDs', run: x509Command },
  { name: 'jwt', summary: 'Mint JWT-SVIDs', run: jwtCommand },
  { name: 'healthcheck', summary: 'Check that the server is healthy', run: healthcheckCommand },
];

function version(): string {
  try {
    const pkg = JSON.parse(fs.readFileSync(path.join(packageRoot, 'package.json'), 'utf8')) as { version?: string };
    return pkg.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

/**
 * `meshid-server <command> …`: dispatches to the command groups. Returns the exit status; every failure has already
 * been printed as one `Error: …` line on stderr.
 */
export async function serverCli(argv: readonly string[], io: CliIo): Promise<number> {
  const [name, ...rest] = argv;
  const help = formatGroupHelp('meshid-server', 'meshid-server: the SPIFFE trust domain server (CA, registration, admin API).', GROUPS);
  if (name === undefined) {
    io.stderr.write(help);
    return EXIT_FAILURE;
  }
  if (['-h', '-help', '--help', 'help'].includes(name)) {
    io.stdout.write(help);
    return 0;
  }
  if (['-v', '-version', '--version', 'version'].includes(name)) {
    io.stdout.write(`meshid-server ${version()}\n`);
    return 0;
  }
  const group = GROUPS.find((g) => g.name === name);
  if (group === undefined) return reportError(io, unknownCommand('meshid-server', name, GROUPS.map((g) => g.name)));
  return group.run(rest, io);
}
