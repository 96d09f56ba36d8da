import fs from 'node:fs';
import { invalidArgument } from '../errors.js';
import type { CliIo } from './output.js';

/** A text file a command was pointed at; `what` names it in the error ("bundle file", "entry file"). */
export function readTextFile(file: string, what: string): string {
  try {
    return withoutByteOrderMark(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    throw invalidArgument(`cannot read ${what} ${file}: ${readProblem(err)}`);
  }
}

/** Why a file could not be read, in words, with the errno for searching: "no such file (ENOENT)". */
export function readProblem(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  const words = code === undefined ? undefined : READ_PROBLEMS[code];
  return words !== undefined ? `${words} (${code})` : code ?? (err as Error).message;
}

const READ_PROBLEMS: Readonly<Record<string, string>> = {
  ENOENT: 'no such file',
  EISDIR: 'it is a directory, not a file',
  ENOTDIR: 'a part of the path is not a directory',
  EACCES: 'permission denied',
  EPERM: 'permission denied',
};

/**
 * Everything on standard input; `missing` is the error when the command was given none to read. From a terminal it
 * is read too (an operator pasting a bundle, as SPIRE's CLI allows), after a line on stderr saying what is awaited:
 * a command silently waiting for input nobody knows it expects looks hung.
 */
export async function readAll(io: Pick<CliIo, 'stdin' | 'stderr'>, missing: string, awaited: string): Promise<string> {
  const { stdin } = io;
  if (stdin === undefined) throw invalidArgument(missing);
  if ((stdin as { isTTY?: boolean }).isTTY === true) io.stderr.write(`Reading ${awaited} from the terminal: paste it, then press Ctrl-D (Ctrl-C to stop)\n`);
  const chunks: Buffer[] = [];
  for await (const chunk of stdin) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk)));
  return withoutByteOrderMark(Buffer.concat(chunks).toString('utf8'));
}

/**
 * The text without the UTF-8 byte order mark some Windows editors put first. JSON.parse refuses it ("Unexpected
 * token") as if the file were broken, though the mark is no part of its content (RFC 8259 §8.1 lets a parser ignore it).
 */
export function withoutByteOrderMark(text: string): string {
  return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
}
