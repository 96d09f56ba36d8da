import path from 'node:path';
import { invalidArgument } from '../../common/errors.js';
import { checkClientSocketPath } from '../../common/cli/socket-problem.js';

/** Where meshid-agent serves the Workload API unless configured otherwise (SPIRE's is /tmp/spire-agent/public/api.sock). */
export const DEFAULT_SOCKET_PATH = '/tmp/meshid-agent/public/api.sock';

/** The environment variable SPIFFE clients fall back to (WL-Endpoint §4; SPEC-NOTES §7). */
export const ENDPOINT_SOCKET_ENV = 'SPIFFE_ENDPOINT_SOCKET';

const UNIX_SCHEME = /^unix:/i;

/**
 * The socket path in a Workload API endpoint URI (WL-Endpoint §4; SPEC-NOTES §7): scheme `unix`, no authority, an
 * absolute path, nothing else — `unix:///run/agent.sock` and `unix:/run/agent.sock` are both valid. Refused as
 * invalid_argument, as go-spiffe refuses them: a relative (opaque) `unix:agent.sock`, an authority (`unix://host/…`),
 * userinfo, a query or a fragment. `tcp://` endpoints are valid SPIFFE endpoints but meshid-agent serves only a
 * Unix socket, so they are refused with that reason.
 */
export function parseEndpointSocket(value: string, source: string = ENDPOINT_SOCKET_ENV): string {
  const what = `${source} value "${value}"`;
  // A URI's scheme is case-insensitive (RFC 3986 §3.1; go-spiffe's url.Parse lowercases it): UNIX:///x is unix:///x.
  const uri = UNIX_SCHEME.test(value) ? `unix:${value.slice('unix:'.length)}` : value;
  if (/^tcp:/i.test(uri)) throw invalidArgument(`${what}: meshid-agent serves the Workload API on a Unix socket only; use unix:///path`);
  if (!uri.startsWith('unix:')) {
    // A bare path is what --socket-path takes, so it is the likeliest slip here: say the URI that names it.
    const hint = uri.startsWith('/') ? `: write unix://${uri.split('/').map(encodeURIComponent).join('/')}` : '';
    throw invalidArgument(`${what} must be a unix:///absolute/path URI${hint}`);
  }
  if (/[?#]/.test(uri)) throw invalidArgument(`${what} must not have a query or fragment`);
  const rest = uri.slice('unix:'.length);
  const authority = rest.startsWith('//') ? rest.slice(2).split('/')[0]! : '';
  if (authority.includes('@')) throw invalidArgument(`${what} must not have userinfo`);
  if (authority !== '') throw invalidArgument(`${what} must not have an authority: write unix:///path (three slashes)`);
  if (!rest.startsWith('/')) throw invalidArgument(`${what} must name an absolute path (unix:///path); a relative unix: URI is opaque`);
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    throw invalidArgument(`${what} is not a valid URI`);
  }
  // Belt and braces: the checks above already rule these out for every input URL accepts.
  if (url.username !== '' || url.password !== '' || url.host !== '') throw invalidArgument(`${what} must not have an authority`);
  let socketPath: string;
  try {
    socketPath = decodeURIComponent(url.pathname);
  } catch {
    throw invalidArgument(`${what} has an invalid percent-encoding`);
  }
  if (socketPath === '' || socketPath === '/') throw invalidArgument(`${what} names no socket file`);
  return socketPath;
}

/** The schemes of a SPIFFE_ENDPOINT_SOCKET value (WL-Endpoint §4): unix:, and tcp:, which meshid refuses. */
const ENDPOINT_SCHEME = /^(?:unix|tcp):/i;

/**
 * A socket path setting (`--socket-path`, `socket_path`): a plain path, resolved against the working directory, or
 * the URI a SPIFFE_ENDPOINT_SOCKET holds, which would otherwise become a relative path named "unix:" or "tcp:": a
 * tcp:// one is refused as parseEndpointSocket refuses it, not looked for (or served) at ./tcp:/host:port.
 */
export function socketPathSetting(value: string, source: string): string {
  return ENDPOINT_SCHEME.test(value) ? parseEndpointSocket(value, source) : path.resolve(value);
}

/**
 * The socket a CLI command talks to: `--socket-path` (a plain path, resolved against the working directory, or a
 * unix: URI), else $SPIFFE_ENDPOINT_SOCKET (a URI), else DEFAULT_SOCKET_PATH.
 */
export function resolveSocketPath(flag: string | undefined, env: NodeJS.ProcessEnv): string {
  // Refused before connecting: Node would connect to the path cut to 108 bytes, which may be another program's socket.
  if (flag !== undefined) return checkClientSocketPath(socketPathSetting(flag, '--socket-path'), '--socket-path');
  const fromEnv = env[ENDPOINT_SOCKET_ENV];
  if (fromEnv !== undefined && fromEnv !== '') return checkClientSocketPath(parseEndpointSocket(fromEnv), ENDPOINT_SOCKET_ENV);
  return DEFAULT_SOCKET_PATH;
}
