import type { Readable, Writable } from 'node:stream';
import type { Clock } from '../clock.js';
import { MeshidError, type ErrorCode } from '../errors.js';
import { fromServiceError } from '../grpc-status.js';
import type { FlagSpec, ParsedArgs } from './args.js';

/** Where a command reads and writes. Injected so commands run in-process in tests and as a child process alike. */
export interface CliIo {
  stdout: Writable;
  stderr: Writable;
  env: NodeJS.ProcessEnv;
  /** Only commands that read input (bundle set without --path) use it. */
  stdin?: Readable;
  /** Only commands that time something themselves (api watch --timeout) use it; systemClock unless a test gives one. */
  clock?: Clock;
}

/** pretty: aligned "Label : value" blocks for people; json: one JSON document on stdout for scripts. */
export type OutputFormat = 'pretty' | 'json';

/** `--output json|pretty` (SPIRE: -output), shared by every command that prints results. */
export const OUTPUT_FLAG: FlagSpec = Object.freeze({
  name: 'output',
  type: 'string',
  choices: ['json', 'pretty'],
  valueName: 'json|pretty',
  description: 'Output format (default pretty)',
});

export function outputFormat(args: ParsedArgs): OutputFormat {
  return args.string(OUTPUT_FLAG.name) === 'json' ? 'json' : 'pretty';
}

/** A value in a pretty block; a list prints one line per element under the same label, undefined prints nothing. */
export type FieldValue = string | number | boolean | readonly string[] | undefined;

/** Width of the label column, as spire-server aligns its entry output ("Entry ID         : …"). */
export const LABEL_WIDTH = 16;

/**
 * Renders `Label : value` lines with the labels padded to one column, e.g. `Selector         : unix:uid:1000` once per
 * selector. Labels longer than `labelWidth` widen the column for the whole block.
 */
export function renderFields(rows: ReadonlyArray<readonly [string, FieldValue]>, labelWidth = LABEL_WIDTH): string {
  const width = Math.max(labelWidth, ...rows.map(([label]) => label.length));
  const lines: string[] = [];
  for (const [label, value] of rows) {
    if (value === undefined) continue;
    const list = Array.isArray(value) ? value : [value];
    for (const item of list) lines.push(`${label.padEnd(width)} : ${String(item)}`);
  }
  return lines.map((l) => l + '\n').join('');
}

/**
 * Makes a proto-shaped value JSON-ready the way protobuf's JSON mapping does: bytes (Buffer, Uint8Array) become
 * standard base64 strings; everything else is kept.
 */
export function toJsonValue(value: unknown): unknown {
  if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('base64');
  if (Array.isArray(value)) return value.map(toJsonValue);
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined).map(([k, v]) => [k, toJsonValue(v)]));
  }
  return value;
}

/** The --output json document: two-space indented, newline-terminated. */
export function renderJson(value: unknown): string {
  return JSON.stringify(toJsonValue(value), null, 2) + '\n';
}

const CODE_NAMES: Record<ErrorCode, string> = {
  invalid_argument: 'InvalidArgument',
  not_found: 'NotFound',
  already_exists: 'AlreadyExists',
  permission_denied: 'PermissionDenied',
  failed_precondition: 'FailedPrecondition',
  aborted: 'Aborted',
  resource_exhausted: 'ResourceExhausted',
  unavailable: 'Unavailable',
  unauthenticated: 'Unauthenticated',
  unimplemented: 'Unimplemented',
  internal: 'Internal',
};

/** The gRPC-style name of an error code, as printed on stderr: invalid_argument → InvalidArgument. */
export function errorCodeName(code: ErrorCode): string {
  return CODE_NAMES[code];
}

/**
 * The one stderr line for a failure: `Error: <Code>: <message>` for domain and gRPC errors (a status received from
 * the server keeps its code and message), `Error: <message>` for anything else. Always a single line.
 */
export function errorLine(err: unknown): string {
  let text: string;
  if (err instanceof MeshidError) text = `${errorCodeName(err.code)}: ${err.message}`;
  else if (isGrpcStatus(err)) {
    const e = fromServiceError(err);
    text = `${errorCodeName(e.code)}: ${e.message}`;
  } else text = err instanceof Error ? err.message : String(err);
  return `Error: ${text.replace(/\s*\n\s*/g, ' ')}`;
}

function isGrpcStatus(err: unknown): boolean {
  return typeof err === 'object' && err !== null && typeof (err as { code?: unknown }).code === 'number' && 'details' in err;
}

/** Exit status of every failed command. spire-server uses 1 for usage and server errors alike. */
export const EXIT_FAILURE = 1;

/**
 * Once the reader of `stream` has gone away (EPIPE: `meshid-agent api fetch x509 | head -1`), drops what is left to
 * print and ends the process with the command's own status: a failing command still exits non-zero for `set -o
 * pipefail`, and a watch does not run on for nothing. Without this listener Node throws the stream's 'error' event
 * as an uncaught exception: a stack trace and exit 1. Any other error is thrown as before. For a binary's main
 * module, on process.stdout.
 */
export function exitOnBrokenPipe(stream: Writable): void {
  stream.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') throw err;
    // Nothing more can be written; the command's own status still decides the exit. One that finishes sets it and
    // ends the process; one that would run on (api watch) ends a moment later, with its status so far (0 unless set).
    stream.write = (() => true) as typeof stream.write;
    setTimeout(() => process.exit(), 1000).unref();
  });
}

/** Writes the error line to stderr and returns the exit status to use. */
export function reportError(io: CliIo, err: unknown): number {
  io.stderr.write(errorLine(err) + '\n');
  return EXIT_FAILURE;
}
