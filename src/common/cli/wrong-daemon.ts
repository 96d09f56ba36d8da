import { failedPrecondition, type MeshidError } from '../errors.js';

/**
 * The socket a CLI was pointed at answers gRPC, but as another daemon: `meshid-agent healthcheck` given the server's
 * admin socket, an admin command given an agent's socket. The connection works, so nothing says "unreachable";
 * passing it off as the other daemon's "healthy" or its "does not implement the method …" would send the operator
 * looking for a broken daemon when the flag is what is wrong.
 */
export interface ExpectedDaemon {
  /** meshid-server or meshid-agent. */
  readonly daemon: string;
  /** What its socket is called, e.g. "meshid-server admin socket". */
  readonly socket: string;
  /** The API only that socket serves, e.g. "the admin API". */
  readonly api: string;
  /** Where the socket path came from, e.g. "--admin-socket (-socketPath) or MESHID_ADMIN_SOCKET". */
  readonly flags: string;
  /** Whom the daemon closes a connection on without a word, besides while it shuts down (the agent: a uid at its cap). */
  readonly closesOn?: string;
}

/** A health check for the daemon's own service name was answered NOT_FOUND (or not at all): another gRPC server. */
export function servedBySomethingElse(socketPath: string, expected: ExpectedDaemon, cause: unknown): MeshidError {
  return failedPrecondition(`${socketPath} is served by something else than ${expected.daemon}: check ${expected.flags}`, cause);
}

/** A call of the daemon's own API was answered "does not implement the method": another gRPC server. */
export function notTheExpectedApi(socketPath: string, expected: ExpectedDaemon, cause: unknown): MeshidError {
  return failedPrecondition(`${socketPath} is not a ${expected.socket} (it answers, but not ${expected.api}): check ${expected.flags}`, cause);
}
