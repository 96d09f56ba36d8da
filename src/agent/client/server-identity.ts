import type { PeerCertificate } from 'node:tls';
import { parseCertificate } from '../../common/x509/certificate.js';

/** The SPIFFE ID meshid-server presents on the agent API (agent.proto). */
function serverSpiffeId(trustDomain: string): string {
  return `spiffe://${trustDomain}/meshid/server`;
}

/**
 * The TLS `checkServerIdentity` for the agent API: the chain has already been verified against the trust bundle by
 * the TLS layer; this replaces the hostname check with the SPIFFE one (X509-SVID §5: authorize by SPIFFE ID) —
 * exactly one URI SAN, equal to spiffe://<td>/meshid/server. The host name the agent dialled plays no part, so a
 * server reached by IP address or through a load balancer is still authenticated. `trustDomain` is read at each
 * handshake because an insecure bootstrap learns it from the first attestation.
 */
export function serverIdentityCheck(trustDomain: () => string | undefined): (host: string, cert: PeerCertificate) => Error | undefined {
  return (_host, cert) => {
    const td = trustDomain();
    if (td === undefined) return new Error('the trust domain is not known yet: cannot authenticate the server');
    let uris: string[];
    try {
      uris = parseCertificate(cert.raw).uriSans;
    } catch (err) {
      return new Error(`the server certificate cannot be parsed: ${(err as Error).message}`);
    }
    const expected = serverSpiffeId(td);
    if (uris.length !== 1 || uris[0] !== expected) {
      return new Error(`the server presented ${uris.length === 0 ? 'no SPIFFE ID' : uris.join(', ')}, expected ${expected}`);
    }
    return undefined;
  };
}
