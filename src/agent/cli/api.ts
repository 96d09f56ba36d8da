import { formatGroupHelp, HELP_WORDS, unknownCommand } from '../../common/cli/command.js';
import { EXIT_FAILURE, reportError, type CliIo } from '../../common/cli/output.js';
import { apiFetchCommand } from './api-fetch.js';
import { apiValidateCommand } from './api-validate.js';
import { apiWatchCommand } from './api-watch.js';

const API_GROUPS: ReadonlyArray<{ name: string; summary: string; run: (argv: readonly string[], io: CliIo) => Promise<number> }> = [
  { name: 'fetch', summary: 'Fetch X509-SVIDs (x509), JWT-SVIDs (jwt) or X.509 bundles (bundle)', run: apiFetchCommand },
  { name: 'validate', summary: 'Validate a JWT-SVID (jwt)', run: apiValidateCommand },
  { name: 'watch', summary: 'Print every X509-SVID update as it arrives', run: apiWatchCommand },
];

/**
 * `meshid-agent api <fetch|validate|watch> …`: the Workload API client commands, shaped like spire-agent's. Each is
 * a plain Workload API client (workload-client.ts). Returns the exit status; failures are one `Error: …` line.
 */
export async function apiCommand(argv: readonly string[], io: CliIo): Promise<number> {
  const [name, ...rest] = argv;
  const help = formatGroupHelp('meshid-agent api', 'Talk to the agent through the SPIFFE Workload API, as a workload does.', API_GROUPS);
  if (name === undefined) {
    io.stderr.write(help);
    return EXIT_FAILURE;
  }
  if (HELP_WORDS.has(name)) {
    io.stdout.write(help);
    return 0;
  }
  const group = API_GROUPS.find((g) => g.name === name);
  if (group === undefined) return reportError(io, unknownCommand('meshid-agent api', name, API_GROUPS.map((g) => g.name)));
  return group.run(rest, io);
}
