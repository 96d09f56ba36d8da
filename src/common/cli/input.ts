import fs from 'node:fs';
import type { Readable } from 'node:stream';
import { invalidArgument } from '../errors.js';

/** A text file a command was pointed at; `what` names it in the error ("bundle file", "entry file"). */
export function readTextFile(file: string, what: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw invalidArgument(`cannot read ${what} ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

/** Everything on standard input; `missing` is the error when the command was given none to read. */
export async function readAll(stdin: Readable | undefined, missing: string): Promise<string> {
  if (stdin === undefined) throw invalidArgument(missing);
  const chunks: Buffer[] = [];
  for await (const chunk of stdin) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk)));
  return Buffer.concat(chunks).toString('utf8');
}
