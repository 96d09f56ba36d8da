import fs from 'node:fs';
import { invalidArgument, unavailable, type MeshidError } from '../errors.js';
import { socketPathLengthProblem } from '../socket-file.js';
import { withoutEmptyResolutionNote } from '../grpc/call-failure.js';

/**
 * Why a CLI command could not connect to a Unix socket, as an operator acts on it. grpc-js reports one errno in a
 * long sentence ("No connection established. Last error: Error: connect ECONNREFUSED /tmp. Resolution note: "); the
 * path itself tells more: connecting to a directory or a plain file is ECONNREFUSED too, which reads as "the server
 * is down" when the path is what is wrong.
 *
 * - `absent`: nothing at the path (ENOENT);
 * - `not-listening`: a socket nobody accepts on (left by a process that died);
 * - `not-a-socket`: a directory or another kind of file; `detail` says which;
 * - `permission`: the caller may not reach or connect to it (another user's socket or directory);
 * - `other`: anything else; `detail` is grpc-js's text.
 */
export type SocketProblem =
  | { kind: 'absent' | 'not-listening' | 'permission' }
  | { kind: 'not-a-socket' | 'other'; detail: string };

export function socketProblem(socketPath: string, connectDetails: string): SocketProblem {
  if (/\bE(ACCES|PERM)\b/.test(connectDetails)) return { kind: 'permission' };
  let st: fs.Stats;
  try {
    st = fs.statSync(socketPath);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EACCES' || code === 'EPERM') return { kind: 'permission' };
    if (code === 'ENOENT' || code === 'ENOTDIR') return { kind: 'absent' };
    return { kind: 'other', detail: withoutEmptyResolutionNote(connectDetails) };
  }
  if (st.isDirectory()) return { kind: 'not-a-socket', detail: 'a directory, not a socket' };
  if (!st.isSocket()) return { kind: 'not-a-socket', detail: st.isFile() ? 'a regular file, not a socket' : 'not a socket' };
  if (/\bECONNREFUSED\b/.test(connectDetails)) return { kind: 'not-listening' };
  if (/\bENOENT\b/.test(connectDetails)) return { kind: 'absent' };
  return { kind: 'other', detail: withoutEmptyResolutionNote(connectDetails) };
}

/** The words for a problem in a "cannot reach … on <path> (<words>)" line. */
function socketProblemWords(problem: SocketProblem): string {
  switch (problem.kind) {
    case 'absent':
      return 'no socket there';
    case 'not-listening':
      return 'nothing is listening';
    case 'permission':
      return 'permission denied';
    default:
      return problem.detail;
  }
}

/**
 * The UNAVAILABLE a CLI reports when it could not connect to `socketPath`: "cannot reach <what> on <path> (<why>)",
 * then the advice for that problem: `wrongPath` for a directory or plain file, `permission` for another user's
 * socket, `down` for the rest (nothing there, nothing listening).
 */
export function unreachableSocket(
  what: string,
  socketPath: string,
  connectDetails: string,
  advice: { wrongPath: string; permission: string; down: string },
  cause: unknown,
): MeshidError {
  const problem = socketProblem(socketPath, connectDetails);
  const hint = problem.kind === 'not-a-socket' ? advice.wrongPath : problem.kind === 'permission' ? advice.permission : advice.down;
  return unavailable(`cannot reach ${what} on ${socketPath} (${socketProblemWords(problem)}): ${hint}`, cause);
}

/**
 * The socket path a CLI command is to connect to, refused when no daemon can listen there: Node connects to a path
 * longer than sun_path cut to its first 108 bytes, so the command would talk to (or report on) whatever is at that
 * shorter path, another program's socket included. `source` names where the path came from ("--admin-socket").
 */
export function checkClientSocketPath(socketPath: string, source: string): string {
  const problem = socketPathLengthProblem(socketPath);
  if (problem === undefined) return socketPath;
  throw invalidArgument(`${source}: ${problem}, so no daemon listens there: give the path the daemon was started with`);
}
