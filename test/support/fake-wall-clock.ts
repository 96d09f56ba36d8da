/**
 * libfaketime moves the wall clock of the daemons under test alone: a machine shared with other tests cannot have its
 * clock moved. Debian's faketime package; .ci/run installs it, and tests needing it are skipped without it, except
 * under MESHID_REQUIRE_INTEROP=1 (CI), where its absence is an error rather than a skip nobody reads.
 */
import fs from 'node:fs';
import { interopSkip } from './interop.js';

/** The preload library, or undefined where libfaketime is not installed. */
export const LIBFAKETIME = ['/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1', '/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1'].find((f) =>
  fs.existsSync(f),
);

/** The `skip` option of a test file `name` that needs libfaketime (see interopSkip). */
export function libfaketimeSkip(name: string): string | false {
  return interopSkip(name, LIBFAKETIME !== undefined, 'faketime');
}

/**
 * The environment that puts a process's wall clock at the offset written in `offsetFile` ("+20h", "-86400"), re-read
 * on every call; the monotonic clock is left as it is.
 */
export function fakeWallClock(offsetFile: string): NodeJS.ProcessEnv {
  return { LD_PRELOAD: LIBFAKETIME!, FAKETIME_TIMESTAMP_FILE: offsetFile, FAKETIME_NO_CACHE: '1', DONT_FAKE_MONOTONIC: '1' };
}
