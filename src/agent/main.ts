#!/usr/bin/env node
/** meshid-agent's executable: `meshid-agent run | api | healthcheck | validate`, shaped like spire-agent's. */
import { runBinary, type CommandGroup } from '../common/cli/binary.js';
import { exitOnBrokenPipe } from '../common/cli/output.js';
import { quietGrpcJsLogForCli } from '../common/grpc/grpc-js-log.js';
import { apiCommand } from './cli/api.js';
import { healthcheckCommand } from './cli/healthcheck.js';

const GROUPS: readonly CommandGroup[] = [
  {
    name: 'run',
    summary: 'Runs the agent',
    // Loaded only for `run`: the client commands never need the agent core.
    run: async (argv, io) => (await import('./cli/run.js')).runAgentCommand(argv, io),
  },
  { name: 'api', summary: 'Talk to the Workload API as a workload does (fetch, validate, watch)', run: apiCommand },
  { name: 'healthcheck', summary: 'Check that the agent is serving', run: healthcheckCommand },
  {
    name: 'validate',
    summary: 'Check the configuration run would start with, without starting',
    run: async (argv, io) => (await import('./cli/validate.js')).validateAgentCommand(argv, io),
  },
];

/** spire-agent commands meshid has not: answered with what to run instead. */
const SPIRE_INSTEAD: Readonly<Record<string, string>> = {
  logger: 'the log level is set when the agent starts (--log-level, log_level in the config file, or MESHID_LOG_LEVEL), not changed while it runs',
  debug: "meshid-agent has no debug API: `healthcheck`, the health_checks listener's /ready (state, entries, SVIDs, agent SVID expiry) and `api fetch` report its state",
};

// `meshid-agent api watch | head -1`: the reader leaving ends the command quietly, not with a stack trace.
exitOnBrokenPipe(process.stdout);
// One `Error: …` line per failure, not grpc-js's own lines around it; `run` routes them into its log instead.
quietGrpcJsLogForCli(process.env);

// exitCode, not exit(): pending stdout writes to a pipe still flush before the process ends. Not a top-level await:
// the executable is bundled as a CommonJS script so that it can start from a V8 code cache (scripts/bundle.mjs).
void runBinary(
  'meshid-agent',
  'meshid-agent: SPIFFE Workload API and Envoy SDS for the workloads of this host.',
  GROUPS,
  process.argv.slice(2),
  {
    stdout: process.stdout,
    stderr: process.stderr,
    env: process.env,
    // `api validate jwt --svid -` reads the token here; without it the command always answered "there is none".
    // A getter, as the server's: only a command that reads input creates the stdin handle.
    get stdin() {
      return process.stdin;
    },
  },
  SPIRE_INSTEAD,
).then((code) => {
  process.exitCode = code;
});
