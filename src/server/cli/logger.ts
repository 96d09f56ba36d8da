import { runGroup, type Command } from '../../common/cli/command.js';
import { OUTPUT_FLAG, outputFormat, renderFields, renderJson, type CliIo } from '../../common/cli/output.js';
import { LOG_LEVEL_NAMES, parseLogLevel } from '../../common/log.js';
import { ADMIN_SOCKET_FLAG, withAdminClient } from './admin-client.js';
import type { LoggerLevels } from './admin-types.js';

/** logrus's name of a level where it differs from pino's: spire-server prints `Logger Level : warning` for WARN. */
const logrusName = (level: string): string => (level === 'warn' ? 'warning' : level);

/**
 * The levels as spire-server logger prints them: the current one, then the one the server started with; in JSON as
 * the names of SPIRE's LogLevel enum (INFO, WARN), in text as logrus writes them (info, warning), under labels not
 * padded to the entry column and followed by a blank line (`Logger Level : info`), as spire-server writes them.
 */
function renderLevels(res: LoggerLevels, format: 'json' | 'pretty'): string {
  const levels = { current_level: res.current_level ?? '', launch_level: res.launch_level ?? '' };
  if (format === 'json') return renderJson({ current_level: levels.current_level.toUpperCase(), launch_level: levels.launch_level.toUpperCase() });
  const rows = [['Logger Level', logrusName(levels.current_level)], ['Launch Level', logrusName(levels.launch_level)]] as const;
  return `${renderFields(rows, 0)}\n`;
}

const get: Command = {
  name: 'get',
  summary: 'Prints the level the server logs at now and the one it started with.',
  flags: [ADMIN_SOCKET_FLAG, OUTPUT_FLAG],
  async run(args, io) {
    io.stdout.write(renderLevels(await withAdminClient(args, io.env, (client) => client.call('Logger', 'GetLogger', {})), outputFormat(args)));
    return 0;
  },
};

const set: Command = {
  name: 'set',
  summary: 'Sets the level the server logs at until a reset or its end (a restart starts at the configured level).',
  flags: [
    {
      name: 'level',
      type: 'string',
      choices: LOG_LEVEL_NAMES,
      choicesAnyCase: true,
      valueName: 'LEVEL',
      description: `The new level, one of ${LOG_LEVEL_NAMES.join(', ')} (SPIRE's names: warning is warn, panic is fatal); required`,
    },
    ADMIN_SOCKET_FLAG,
    OUTPUT_FLAG,
  ],
  async run(args, io) {
    const level = parseLogLevel(args.requiredString('level', `(one of ${LOG_LEVEL_NAMES.join(', ')})`), 'level');
    io.stdout.write(renderLevels(await withAdminClient(args, io.env, (client) => client.call('Logger', 'SetLogLevel', { level })), outputFormat(args)));
    return 0;
  },
};

const reset: Command = {
  name: 'reset',
  summary: 'Sets the log level back to the one the server started with.',
  flags: [ADMIN_SOCKET_FLAG, OUTPUT_FLAG],
  async run(args, io) {
    io.stdout.write(renderLevels(await withAdminClient(args, io.env, (client) => client.call('Logger', 'ResetLogLevel', {})), outputFormat(args)));
    return 0;
  },
};

/** `meshid-server logger get|set|reset`: the server's log level at run time (admin API meshid.admin.v1.Logger). */
export async function loggerCommand(argv: string[], io: CliIo): Promise<number> {
  return runGroup('meshid-server logger', "Show or change the server's log level while it runs.", [get, set, reset], argv, io);
}
