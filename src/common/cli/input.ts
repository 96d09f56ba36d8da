import fs from 'node:fs';
import type { Readable } from 'node:stream';
import { invalidArgument } from '../errors.js';

/** A text file a command was pointed at; `what` names it in the error ("bundle file", "entry file"). */
export function readTextFile(file: string, what: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
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
 * Everything on standard input; `missing` is the error when the command was given none to read. A terminal is not
 * read: a command waiting for input nobody knows it expects looks hung, so the operator is told what to pass instead.
 */
export async function readAll(stdin: Readable | undefined, missing: string): Promise<string> {
  if (stdin === undefined) throw invalidArgument(missing);
  if ((stdin as { isTTY?: boolean }).isTTY === true) throw invalidArgument(`${missing} (standard input is a terminal: pipe or redirect the input)`);
  const chunks: Buffer[] = [];
  for await (const chunk of stdin) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk)));
  return Buffer.concat(chunks).toString('utf8');
}
