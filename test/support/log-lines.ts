/**
 * The daemons' log as an operator's tools read it: one JSON object per line (pino's). Lines a tool would read
 * differently from another (a key given twice: jq keeps the last, other parsers the first) fail the parse, naming
 * the key, as do lines that are no JSON.
 */
import { Writable } from 'node:stream';
import { createLogger, type Logger } from '../../src/common/log.js';
import { firstDuplicateKey } from '../../src/common/json-duplicate-key.js';

export type LogRecord = Record<string, unknown> & { level: number; msg: string };

/** pino's numeric levels by name. */
export const LEVEL = { trace: 10, debug: 20, info: 30, warn: 40, error: 50 } as const;

export function parseLogLines(output: string): LogRecord[] {
  return output
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => {
      const duplicate = firstDuplicateKey(line);
      if (duplicate !== undefined) throw new Error(`log line holds "${duplicate.key}" twice: ${line}`);
      return JSON.parse(line) as LogRecord;
    });
}

/** A logger for an in-process server or agent whose lines a test reads back (debug and up). */
export function capturingLogger(name: string): { log: Logger; records: () => LogRecord[]; text: () => string } {
  const raw: string[] = [];
  const log = createLogger({ name, level: 'debug', pretty: false, destination: new Writable({ write: (c, _e, cb) => (raw.push(String(c)), cb()) }) });
  return { log, records: () => parseLogLines(raw.join('')), text: () => raw.join('') };
}
