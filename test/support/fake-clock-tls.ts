/**
 * node:tls asks OpenSSL to judge certificate validity on the real clock. An in-process server and agent whose CAs run
 * on a FakeClock days away from it then fail every handshake ("certificate is not yet valid" / "has expired") — the
 * agent API is mTLS, and each agent SVID renewal or bundle change opens a new connection. `judgeTlsOnClock(clock)`
 * makes the TLS in this process judge validity on `clock` instead, and changes nothing else:
 *
 * - OpenSSL still builds and verifies every chain against the configured roots. Only when its complaint is about time
 *   (CERT_NOT_YET_VALID, CERT_HAS_EXPIRED) is the peer's chain verified again, in full (names, AKI/SKI, signatures,
 *   CA constraints, validity), by verifyChain at `clock.now()` against the same roots; the connection counts as
 *   authorized only if that passes (and, for a client, checkServerIdentity passes too). Any other complaint keeps its
 *   usual outcome.
 * - Client side: `tls.connect` with a secure context made by `tls.createSecureContext({ ca })` (grpc-js createSsl
 *   does exactly that). Server side: `http2.createSecureServer` with `requestCert` and `rejectUnauthorized: false`
 *   (grpc-js createCertificateProviderServerCredentials(…, false), meshid's agent API), roots from `ca` and every
 *   later `setSecureContext`.
 *
 * Only for tests; the returned function restores node:tls and node:http2.
 */
import http2 from 'node:http2';
import tls from 'node:tls';
import type { Clock } from '../../src/common/clock.js';
import { verifyChain } from '../../src/common/x509/chain-verification.js';
import { pemToDerList } from '../../src/common/x509/pem.js';

const TIME_ERRORS = new Set(['CERT_NOT_YET_VALID', 'CERT_HAS_EXPIRED']);

type CaOption = string | Buffer | Array<string | Buffer> | undefined;

function rootsOf(ca: CaOption): Buffer[] | undefined {
  if (ca === undefined) return undefined;
  const parts = Array.isArray(ca) ? ca : [ca];
  return parts.flatMap((p) => pemToDerList(Buffer.isBuffer(p) ? p.toString('utf8') : p));
}

/** The certificates the peer presented, leaf first, without self-signed ones (the trusted roots come from `ca`). */
function peerChain(socket: tls.TLSSocket): Buffer[] {
  const chain: Buffer[] = [];
  const seen = new Set<string>();
  let cert: tls.DetailedPeerCertificate | undefined = socket.getPeerCertificate(true);
  while (cert?.raw !== undefined && !seen.has(cert.fingerprint256)) {
    seen.add(cert.fingerprint256);
    const issuer: tls.DetailedPeerCertificate | undefined = cert.issuerCertificate;
    const selfSigned = issuer === undefined || issuer.fingerprint256 === cert.fingerprint256;
    if (!selfSigned || chain.length === 0) chain.push(cert.raw);
    if (selfSigned) break;
    cert = issuer;
  }
  return chain;
}

/** The error that stands when `socket`'s only complaint was time, judged again at `now`; undefined: authorized. */
function judgeAgain(socket: tls.TLSSocket, roots: Buffer[] | undefined, now: number): Error | undefined {
  const code = String(socket.authorizationError ?? '');
  if (!TIME_ERRORS.has(code) || roots === undefined || roots.length === 0) return new Error(code || 'peer not authorized');
  try {
    verifyChain(peerChain(socket), roots, now);
    return undefined;
  } catch (err) {
    return err as Error;
  }
}

/**
 * Makes TLS in this process judge certificate validity on `clock`; returns the function that undoes it. With
 * `serverClock`, the servers in this process judge their clients on it instead (an in-process server and agent whose
 * host clocks disagree).
 */
export function judgeTlsOnClock(clock: Clock, serverClock: Clock = clock): () => void {
  const originalCreateSecureContext = tls.createSecureContext;
  const originalConnect = tls.connect;
  const originalCreateSecureServer = http2.createSecureServer;
  const contextRoots = new WeakMap<tls.SecureContext, Buffer[]>();

  tls.createSecureContext = function (options?: tls.SecureContextOptions): tls.SecureContext {
    const context = originalCreateSecureContext(options);
    const roots = rootsOf(options?.ca);
    if (roots !== undefined) contextRoots.set(context, roots);
    return context;
  };

  tls.connect = function (...args: unknown[]): tls.TLSSocket {
    const options = args[0] as tls.ConnectionOptions | undefined;
    const roots = options?.secureContext !== undefined ? contextRoots.get(options.secureContext) : undefined;
    if (typeof options !== 'object' || options === null || roots === undefined || options.rejectUnauthorized === false) {
      return (originalConnect as (...a: unknown[]) => tls.TLSSocket)(...args);
    }
    const callback = typeof args[1] === 'function' ? (args[1] as () => void) : undefined;
    const socket = originalConnect({ ...options, rejectUnauthorized: false }, callback);
    // Judged before any 'secureConnect' listener runs; a refusal ends the socket with the error and no
    // 'secureConnect' at all, as node does with rejectUnauthorized.
    const emit = socket.emit.bind(socket);
    socket.emit = (event: string | symbol, ...rest: unknown[]): boolean => {
      if (event !== 'secureConnect' || socket.authorized) return emit(event, ...rest);
      let error = judgeAgain(socket, roots, clock.now());
      if (error === undefined) {
        const check = options.checkServerIdentity ?? tls.checkServerIdentity;
        error = check(options.servername ?? options.host ?? '', socket.getPeerCertificate(true));
      }
      if (error !== undefined) {
        socket.destroy(error);
        return false;
      }
      socket.authorized = true;
      (socket as { authorizationError: Error | null }).authorizationError = null;
      return emit(event, ...rest);
    };
    return socket;
  } as typeof tls.connect;

  http2.createSecureServer = function (...args: unknown[]): http2.Http2SecureServer {
    const server = (originalCreateSecureServer as (...a: unknown[]) => http2.Http2SecureServer)(...args);
    const options = args[0] as http2.SecureServerOptions | undefined;
    if (typeof options !== 'object' || options === null || !options.requestCert || options.rejectUnauthorized !== false) return server;
    let roots = rootsOf(options.ca);
    const originalSetSecureContext = server.setSecureContext.bind(server);
    server.setSecureContext = (details: tls.SecureContextOptions): void => {
      originalSetSecureContext(details);
      roots = rootsOf(details.ca) ?? roots;
    };
    // Before http2 sees the socket: authorization is read from the socket on every call (grpc-js getAuthContext).
    server.prependListener('secureConnection', (socket: tls.TLSSocket) => {
      if (socket.authorized || socket.getPeerCertificate()?.raw === undefined) return;
      if (judgeAgain(socket, roots, serverClock.now()) === undefined) {
        socket.authorized = true;
        (socket as { authorizationError: Error | null }).authorizationError = null;
      }
    });
    return server;
  } as typeof http2.createSecureServer;

  return () => {
    tls.createSecureContext = originalCreateSecureContext;
    tls.connect = originalConnect;
    http2.createSecureServer = originalCreateSecureServer;
  };
}
