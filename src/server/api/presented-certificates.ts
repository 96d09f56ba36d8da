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
 *
 * A restart storm admits thousands of agents before any of their first calls reaches a handler: admission, call gate
 * and authentication each parsed every certificate again, the bound long passed. So the connection's admission holds
 * the agent SVID it parsed (hold) beyond the bound until a call on it has been authenticated with it (parse with
 * `authenticated`) or it closes, whichever comes first: a certificate is parsed once per connection, and held beyond
 * the bound only between a connection's admission and its first authenticated call.
 */
export class PresentedCertificates {
  /** DER (as latin1, one character per byte) → parsed; Map order is recency order. */
  private readonly parsed = new Map<string, ParsedCertificate>();
  /** Certificates admitted connections hold until their first authenticated call, by DER as above; not bounded here. */
  private readonly held = new Map<string, ParsedCertificate>();

  constructor(private readonly maxRemembered = DEFAULT_REMEMBERED) {}

  /** parseCertificate(der), from the memo when these very bytes were parsed lately. Throws as parseCertificate does. */
  parse(der: Buffer, opts: { authenticated?: boolean } = {}): ParsedCertificate {
    // The whole DER as the key, compared as a string: only the same bytes ever find a result. A digest would cost as
    // much to compute (~1 µs) and leave a collision to argue about.
    const key = der.toString('latin1');
    const held = this.held.get(key);
    if (held !== undefined) {
      if (opts.authenticated !== true) return held;
      // Its connection's first authenticated call: from here on it is one of the bounded memo's, as any other.
      this.held.delete(key);
      this.remember(key, held);
      return held;
    }
    const hit = this.parsed.get(key);
    if (hit !== undefined) {
      this.parsed.delete(key);
      this.parsed.set(key, hit);
      return hit;
    }
    // A copy: the result outlives the call, and the bytes it holds must stay those of the key.
    const cert = parseCertificate(Buffer.from(der));
    this.remember(key, cert);
    return cert;
  }

  /**
   * Holds `cert` (a result of parse) beyond the bound for the connection just admitted with it, until a call is
   * authenticated with it or the returned release is called (at the connection's close).
   */
  hold(cert: ParsedCertificate): () => void {
    const key = cert.der.toString('latin1');
    this.parsed.delete(key);
    this.held.set(key, cert);
    return () => {
      if (this.held.get(key) === cert) this.held.delete(key);
    };
  }

  /** Certificates held for connections now (for tests). */
  get heldCount(): number {
    return this.held.size;
  }

  private remember(key: string, cert: ParsedCertificate): void {
    this.parsed.delete(key);
    if (this.parsed.size >= this.maxRemembered) this.parsed.delete(this.parsed.keys().next().value!);
    this.parsed.set(key, cert);
  }
}

const DEFAULT_REMEMBERED = 128;
