import type { CliIo } from '../../common/cli/output.js';
import { runBinary, type CommandGroup } from '../../common/cli/binary.js';
import { agentCommand } from './agent.js';
import { backupCommand } from './backup.js';
import { bundleCommand } from './bundle.js';
import { caCommand } from './ca.js';
import { entryCommand } from './entry.js';
import { federationCommand } from './federation.js';
import { healthcheckCommand } from './healthcheck.js';
import { jwtCommand } from './jwt.js';
import { loggerCommand } from './logger.js';
import { tokenCommand } from './token.js';
import { x509Command } from './x509.js';

/** The top-level commands of meshid-server, shaped like spire-server's. */
const GROUPS: readonly CommandGroup[] = [
  {
    name: 'run',
    summary: 'Runs the server',
    // Loaded only for `run`: it pulls in the datastore and CA, which the client commands never need.
    run: async (argv) => (await import('./run.js')).runServerCommand(argv),
  },
  { name: 'entry', summary: 'Manage registration entries (create, show, count, update, delete)', run: entryCommand },
  { name: 'token', summary: 'Manage join tokens for agents (generate, revoke)', run: tokenCommand },
  { name: 'bundle', summary: 'Show the own bundle; manage federated bundles (show, list, count, set, delete)', run: bundleCommand },
  { name: 'federation', summary: 'Manage federation relationships and their bundle polls (list, show, create, update, delete, refresh)', run: federationCommand },
  { name: 'agent', summary: 'Manage attested agents (list, count, show, evict, ban)', run: agentCommand },
  { name: 'ca', summary: 'Show and rotate the certificate authorities (show, rotate-root, activate, taint, revoke)', run: caCommand },
  { name: 'x509', summary: 'Mint X509-SVIDs', run: x509Command },
  { name: 'jwt', summary: 'Mint JWT-SVIDs', run: jwtCommand },
  { name: 'backup', summary: 'Write a consistent backup of the running server (datastore snapshot, CA keys) into a new directory', run: backupCommand },
  {
    name: 'restore',
    summary: 'Restore a backup into a new data dir, server stopped, voiding the join tokens it brings back',
    // Loaded only for `restore`: it opens the datastore, which the client commands never need.
    run: async (argv, io) => (await import('./restore.js')).restoreCommand(argv, io),
  },
  { name: 'logger', summary: "Show or change the server's log level while it runs (get, set, reset)", run: loggerCommand },
  { name: 'healthcheck', summary: 'Check that the server is healthy', run: healthcheckCommand },
  {
    name: 'validate',
    summary: 'Check the configuration run would start with, without starting',
    run: async (argv, io) => (await import('./validate.js')).validateServerCommand(argv, io),
  },
];

/** spire-server commands meshid has under another name, or not at all: answered with what to run instead. */
const SPIRE_INSTEAD: Readonly<Record<string, string>> = {
  localauthority:
    'spire-server\'s localauthority is meshid-server ca: x509|jwt show is ca show, x509 prepare is ca rotate-root and x509 activate is ca activate --id <prepared root> ' +
    '(JWT keys are prepared and activated on their own), taint and revoke are ca taint and ca revoke',
  upstreamauthority: 'spire-server\'s upstreamauthority is meshid-server ca (show, taint, revoke; the upstream CA is configured with --upstream-ca-cert)',
  debug: 'meshid-server has no debug API: `ca show`, `agent count`, `entry count` and `healthcheck` report its state',
};

/**
 * `meshid-server <command> …`: dispatches to the command groups. Returns the exit status; every failure has already
 * been printed as one `Error: …` line on stderr.
 */
export function serverCli(argv: readonly string[], io: CliIo): Promise<number> {
  return runBinary('meshid-server', 'meshid-server: the SPIFFE trust domain server (CA, registration, admin API).', GROUPS, argv, io, SPIRE_INSTEAD);
}
