import { pino, type Logger, type LoggerOptions } from 'pino';
import { invalidArgument } from './errors.js';
import { stderrSink, type LostLogLines } from './log-sink.js';

export type { Logger };

/**
 * The one pino root per process. Key material and token values never reach a log line: the redact paths cover every
 * field name meshid uses for them, and code passes fingerprints or IDs, not secrets.
 */
export const REDACT_PATHS = [
  'privateKey', '*.privateKey', 'key', '*.key', 'token', '*.token', 'joinToken', '*.joinToken',
  'svid', '*.svid', 'jwt', '*.jwt', 'x509_svid_key', '*.x509_svid_key', 'secret', '*.secret',
];

export interface LogOptions {
  level?: string;
  /** Pretty output for humans; defaults to whether stderr is a TTY. */
  pretty?: boolean;
  name: string;
  destination?: NodeJS.WritableStream;
}

/** The pino levels meshid logs at, most verbose first (pino's, without silent). */
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
/** The level when neither --log-level, log_level nor MESHID_LOG_LEVEL names one. */
export const DEFAULT_LOG_LEVEL: LogLevel = 'info';

/**
 * SPIRE's level names that are not pino's. SPIRE parses every level with logrus.ParseLevel, which takes `warning` for
 * warn and has `panic` above fatal; pino has no panic level, and fatal is the nearest (meshid logs at neither).
 */
const SPIRE_ONLY_LEVELS: Readonly<Record<string, LogLevel>> = { warning: 'warn', panic: 'fatal' };

/** Every name a level is taken by, in any case: pino's and SPIRE's (logrus's), as spire-server and spire-agent take. */
export const LOG_LEVEL_NAMES: readonly string[] = [...LOG_LEVELS, ...Object.keys(SPIRE_ONLY_LEVELS)];

/**
 * The one parser of a log level: a name of LOG_LEVEL_NAMES in any case (SPIRE's configs write "DEBUG"), as pino's
 * level; another is invalid_argument naming `what` (the setting) and the value as written.
 */
export function parseLogLevel(raw: string, what: string): LogLevel {
  const name = raw.toLowerCase();
  const level = SPIRE_ONLY_LEVELS[name] ?? LOG_LEVELS.find((l) => l === name);
  if (level === undefined) throw invalidArgument(`${what} "${raw}" is not one of ${LOG_LEVEL_NAMES.join(', ')}`);
  return level;
}

/** A configured log level (parseLogLevel), `info` when unset. */
export function configuredLogLevel(raw: string | undefined, what: string): LogLevel {
  return parseLogLevel(raw ?? DEFAULT_LOG_LEVEL, what);
}

/** Whether a pino logger at `level` writes lines at `line`. */
export function levelWrites(level: string, line: LogLevel): boolean {
  return (pino.levels.values[level] ?? Infinity) <= pino.levels.values[line]!;
}

export function createLogger(options: LogOptions): Logger {
  const base: LoggerOptions = {
    name: options.name,
    level: options.level ?? configuredLogLevel(process.env['MESHID_LOG_LEVEL'], 'MESHID_LOG_LEVEL'),
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
  };
  if (options.destination !== undefined) return pino(base, options.destination as pino.DestinationStream);
  const pretty = options.pretty ?? process.stderr.isTTY === true;
  // Assigned before the sink can report: it reports in a later turn.
  let log: Logger | undefined;
  const sink = stderrSink((lost: LostLogLines) =>
    log?.warn(lost, 'stderr refused log lines for a while: those it held are written above; droppedLines more were lost'),
  );
  log = pino(base, pretty ? prettyStream(sink) : sink);
  return log;
}

/** A dependency-free human format for terminals: "12:00:01 INFO  ca: message key=value". */
function prettyStream(sink: pino.DestinationStream): pino.DestinationStream {
  const names: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO ', 40: 'WARN ', 50: 'ERROR', 60: 'FATAL' };
  return {
    write(line: string) {
      try {
        const { level, time, msg, name, subsystem, pid: _pid, hostname: _h, ...rest } = JSON.parse(line) as Record<string, unknown>;
        const ts = new Date(time as number).toISOString().slice(11, 19);
        const extra = Object.entries(rest)
          .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
          .join(' ');
        sink.write(`${ts} ${names[level as number] ?? level} ${subsystem ?? name}: ${msg ?? ''}${extra ? ' ' + extra : ''}\n`);
      } catch {
        sink.write(line);
      }
    },
  };
}

/** A logger that drops everything, for tests and library use. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
