import tls from 'node:tls';
import { parseCertificate } from '../../common/x509/certificate.js';
import { certificatesToPem } from '../../common/x509/pem.js';
import { serverIdentityCheck } from './server-identity.js';
import { TLS_NAME } from './node-client.js';
import { parseHostPort } from '../../common/host-port.js';

const TIME_ERRORS = new Set(['CERT_NOT_YET_VALID', 'CERT_HAS_EXPIRED']);

export interface ServerTrustProbeOptions {
  /** host:port of the agent API, as configured (IPv6 in brackets). */
  serverAddress: string;
  /** The trust domain whose server identity is expected. */
  trustDomain: string | undefined;
  /** Bound on the whole probe; a server that does not finish a handshake in time counts as unreachable. */
  timeoutMs?: number;
  /** Where the proxy settings are read; process.env by default. */
  env?: NodeJS.ProcessEnv;
}

/**
 * grpc-js sends the agent's channel through the proxy these name (in this order, lower case only), so a direct probe
 * could meet a different peer than the channel does: a TLS-intercepting middlebox would be reported as a wrong
 * --trust-bundle. With a proxy set, the probe is not made and a trust failure is retried like an outage.
 */
const GRPC_PROXY_VARIABLES = ['grpc_proxy', 'https_proxy', 'http_proxy'];

/** What the server presented that the roots cannot authenticate. */
export interface ServerTrustProblem {
  /** The URI SANs of the server's certificate ("spiffe://example.org/meshid/server"), or "no SPIFFE ID". */
  presented: string;
  /** OpenSSL's verification error ("unable to get local issuer certificate") or the SPIFFE ID mismatch. */
  reason: string;
}

/**
 * Whether meshid-server can be authenticated with `roots`: a TLS handshake with the same verification the agent's
 * channel does (OpenSSL against the roots, then serverIdentityCheck), told apart from not getting an answer at all.
 * grpc-js reports both as the same UNAVAILABLE, but a server that answers with a certificate the roots do not
 * authenticate is a configuration error that no retry fixes. Resolves the problem, or undefined when the server was
 * authenticated or could not be reached (refused, timed out, not TLS), or when a proxy is configured. Never sends
 * anything over the connection.
 */
export function probeServerTrust(roots: readonly Buffer[], o: ServerTrustProbeOptions): Promise<ServerTrustProblem | undefined> {
  const env = o.env ?? process.env;
  if (GRPC_PROXY_VARIABLES.some((name) => (env[name] ?? '') !== '')) return Promise.resolve(undefined);
  let address: { host: string; port: number };
  try {
    // The one HOST:PORT parser, as the agent's config checked it: the probe dials what the channel dials.
    address = parseHostPort(o.serverAddress, 'server_address', 'dial');
  } catch {
    return Promise.resolve(undefined);
  }
  return new Promise((resolve) => {
    const socket = tls.connect({
      host: address.host,
      port: address.port,
      servername: TLS_NAME,
      ca: certificatesToPem(roots),
      // As the channel verifies (node-client.ts): every certificate of the bundle is a trust anchor.
      allowPartialTrustChain: true,
      ALPNProtocols: ['h2'],
      // Verified below, so that a failure is a result to report rather than a connection error; the host name plays
      // no part in the server's identity (serverIdentityCheck), so Node's own host-name check is left out.
      rejectUnauthorized: false,
      checkServerIdentity: () => undefined,
    });
    const finish = (problem: ServerTrustProblem | undefined): void => {
      clearTimeout(bound);
      socket.destroy();
      resolve(problem);
    };
    const bound = setTimeout(() => finish(undefined), o.timeoutMs ?? 5000);
    socket.once('error', () => finish(undefined));
    socket.once('secureConnect', () => {
      const peer = socket.getPeerCertificate();
      if (peer.raw === undefined) return finish(undefined);
      let presented: string;
      try {
        const uris = parseCertificate(peer.raw).uriSans;
        presented = uris.length === 0 ? 'no SPIFFE ID' : uris.join(', ');
      } catch {
        presented = 'a certificate that cannot be parsed';
      }
      const error = socket.authorizationError as unknown as string | Error | null;
      const code = error instanceof Error ? (error as NodeJS.ErrnoException).code ?? error.message : String(error);
      // A certificate outside its validity is a clock (or a server whose renewals fail) to be retried, not a wrong
      // --trust-bundle: the agent's own checks report a skewed clock with what to do about it.
      if (!socket.authorized && TIME_ERRORS.has(code)) return finish(undefined);
      if (!socket.authorized) return finish({ presented, reason: code });
      const mismatch = serverIdentityCheck(() => o.trustDomain)(TLS_NAME, peer);
      finish(mismatch === undefined ? undefined : { presented, reason: mismatch.message });
    });
  });
}
