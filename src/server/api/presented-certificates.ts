import { parseCertificate, type ParsedCertificate } from '../../common/x509/certificate.js';

/**
 * The last certificates agents presented, parsed: agent-call-gate.ts parses a call's client certificate when its
 * metadata arrives and agent-auth.ts needs it again in the handler, and an agent's calls follow one another with the
 * same certificate. A parse costs ~110 µs (OpenSSL's object and meshid's DER walk); a hit ~1 µs. grpc-js hands each
 * reader a new copy of the DER and gives interceptors nothing per call to hang the result on, so the memo is keyed by
 * the DER bytes themselves.
 *
 * Held parsed, a certificate costs ~14 KB (mostly OpenSSL's): the bound keeps the calls in flight between gate and
 * handler and the agents calling now, not every connected agent. A certificate that fell out is parsed again.
 */
export class PresentedCertificates {
  /** DER (as latin1, one character per byte) → parsed; Map order is recency order. */
  private readonly parsed = new Map<string, ParsedCertificate>();

  constructor(private readonly maxRemembered = DEFAULT_REMEMBERED) {}

  /** parseCertificate(der), from the memo when these very bytes were parsed lately. Throws as parseCertificate does. */
  parse(der: Buffer): ParsedCertificate {
    // The whole DER as the key, compared as a string: only the same bytes ever find a result. A digest would cost as
    // much to compute (~1 µs) and leave a collision to argue about.
    const key = der.toString('latin1');
    const hit = this.parsed.get(key);
    if (hit !== undefined) {
      this.parsed.delete(key);
      this.parsed.set(key, hit);
      return hit;
    }
    // A copy: the result outlives the call, and the bytes it holds must stay those of the key.
    const cert = parseCertificate(Buffer.from(der));
    if (this.parsed.size >= this.maxRemembered) this.parsed.delete(this.parsed.keys().next().value!);
    this.parsed.set(key, cert);
    return cert;
  }
}

const DEFAULT_REMEMBERED = 128;
