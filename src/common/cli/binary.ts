import { meshidVersion } from '../meshid-version.js';
import { formatGroupHelp, HELP_WORDS, noSuchCommand } from './command.js';
import { EXIT_FAILURE, reportError, type CliIo } from './output.js';

/** A top-level command of a binary (`meshid-server entry …`, `meshid-agent api …`). */
export interface CommandGroup {
  name: string;
  summary: string;
  run: (argv: string[], io: CliIo) => Promise<number>;
}

/**
 * Dispatches `<binary> <group> …`: help and version, an unknown group as one `Error:` line with a suggestion,
 * otherwise the group's own parser. Returns the exit status. `spireInstead` answers the SPIRE binary's commands that
 * meshid has under another name, or not at all, with what to run instead.
 */
export async function runBinary(
  binary: string,
  summary: string,
  groups: readonly CommandGroup[],
  argv: readonly string[],
  io: CliIo,
  spireInstead: Readonly<Record<string, string>> = {},
): Promise<number> {
  const [name, ...rest] = argv;
  const help = `${formatGroupHelp(binary, summary, groups)}Run "${binary} --version" for its version.\n`;
  if (name === undefined) {
    io.stderr.write(help);
    return EXIT_FAILURE;
  }
  if (HELP_WORDS.has(name)) {
    io.stdout.write(help);
    return 0;
  }
  if (['-v', '-version', '--version', 'version'].includes(name)) {
    io.stdout.write(`${binary} ${meshidVersion()}\n`);
    return 0;
  }
  const group = groups.find((g) => g.name === name);
  if (group === undefined) return reportError(io, noSuchCommand(binary, name, groups.map((g) => g.name), spireInstead));
  return group.run(rest, io);
}
