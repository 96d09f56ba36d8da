import { Readable, Writable } from 'node:stream';
import type { CliIo } from '../../../src/common/cli/output.js';

/** A CliIo whose stdout and stderr are collected as strings, for running commands in-process. */
export interface CapturedIo extends CliIo {
  out(): string;
  err(): string;
}

export function captureIo(env: NodeJS.ProcessEnv = {}, stdinText?: string): CapturedIo {
  let out = '';
  let err = '';
  const sink = (append: (s: string) => void): Writable =>
    new Writable({
      write(chunk: Buffer | string, _enc, cb) {
        append(chunk.toString());
        cb();
      },
    });
  return {
    stdout: sink((s) => (out += s)),
    stderr: sink((s) => (err += s)),
    env,
    ...(stdinText === undefined ? {} : { stdin: Readable.from([Buffer.from(stdinText)]) }),
    out: () => out,
    err: () => err,
  };
}
