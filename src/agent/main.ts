#!/usr/bin/env node
/** meshid-agent's executable: `meshid-agent run | api | healthcheck`, shaped like spire-agent's. */
import fs from 'node:fs';
import path from 'node:path';
import { formatGroupHelp, unknownCommand } from '../common/cli/command.js';
import { EXIT_FAILURE, reportError, type CliIo } from '../common/cli/output.js';
import { packageRoot } from '../common/paths.js';
import { apiCommand, healthcheckCommand } from './cli/index.js';

type GroupCommand = (argv: readonly string[], io: CliIo) => Promise<number>;

const GROUPS: ReadonlyArray<{ name: string; summary: string; run: GroupCommand }> = [
  {
    name: 'run',
    summary: 'Runs the agent',
    // Loaded only for `run`: the client commands never need the agent core.
    run: async (argv, io) => (await import('./cli/run.js')).runAgentCommand(argv, io),
  },
  { name: 'api', summary: 'Talk to the Workload API as a workload does (fetch, validate, watch)', run: apiCommand },
  { name: 'healthcheck', summary: 'Check that the agent is serving', run: healthcheckCommand },
];

function version(): string {
  try {
    return (JSON.parse(fs.readFileSync(path.join(packageRoot, 'package.json'), 'utf8')) as { version?: string }).version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

async function agentCli(argv: readonly string[], io: CliIo): Promise<number> {
  const [name, ...rest] = argv;
  const help = formatGroupHelp('meshid-agent', 'meshid-agent: SPIFFE Workload API and Envoy SDS for the workloads of this host.', GROUPS);
  if (name === undefined) {
    io.stderr.write(help);
    return EXIT_FAILURE;
  }
  if (['-h', '-help', '--help', 'help'].includes(name)) {
    io.stdout.write(help);
    return 0;
  }
  if (['-v', '-version', '--version', 'version'].includes(name)) {
    io.stdout.write(`meshid-agent ${version()}\n`);
    return 0;
  }
  const group = GROUPS.find((g) => g.name === name);
  if (group === undefined) return reportError(io, unknownCommand('meshid-agent', name, GROUPS.map((g) => g.name)));
  return group.run(rest, io);
}

// exitCode, not exit(): pending stdout writes to a pipe still flush before the process ends.
process.exitCode = await agentCli(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, env: process.env });
