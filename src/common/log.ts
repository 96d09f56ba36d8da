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

/** The levels operators may choose (pino's, without fatal and silent). */
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error'] as const;
/** The level when neither --log-level, log_level nor MESHID_LOG_LEVEL names one. */
export const DEFAULT_LOG_LEVEL = 'info';

/**
 * A configured log level, `info` when unset, in any case as SPIRE takes it (its configs write "DEBUG"); one that is
 * none of LOG_LEVELS is invalid_argument naming `what` (the setting) and the value as written.
 */
export function configuredLogLevel(raw: string | undefined, what: string): string {
  const level = (raw ?? DEFAULT_LOG_LEVEL).toLowerCase();
  if (!(LOG_LEVELS as readonly string[]).includes(level)) throw invalidArgument(`${what} "${raw}" is not one of ${LOG_LEVELS.join(', ')}`);
  return level;
}

export function createLogger(options: LogOptions): Logger {
  const base: LoggerOptions = {
    name: options.name,
    level: options.level ?? process.env['MESHID_LOG_LEVEL'] ?? DEFAULT_LOG_LEVEL,
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
