import { invalidArgument } from '../../common/errors.js';
import { refuseDuplicateKeys } from '../../common/json-duplicate-key.js';
import { checkWritableX509Authority, federatedBundleFromSpiffeJson, type TrustBundle } from '../../common/spiffe/bundle.js';
import { parseSpiffeId } from '../../common/spiffe/spiffe-id.js';
import { parseCertificate } from '../../common/x509/certificate.js';
import { pemToDerList } from '../../common/x509/pem.js';
import type { StoredBundle } from '../datastore/datastore.js';

/**
 * A federated trust domain's bundle as the datastore keeps it, from a SPIFFE bundle document (`bundle set`, or a
 * bundle endpoint). The stored sequence is meshid's own counter of the changes agents are told of: one more than the
 * stored one. The partner's spiffe_sequence is not used: it may be any 64-bit number, and one near 2^53 would leave
 * no room to count on.
 */
export function storedFederatedBundle(trustDomain: string, bundle: TrustBundle, previous: StoredBundle | undefined, now: number): StoredBundle {
  return {
    trustDomain,
    x509Authorities: bundle.x509Authorities,
    jwtAuthorities: bundle.jwtAuthorities.map((k) => ({
      kid: k.kid,
      publicKeyPem: k.publicKey.export({ type: 'spki', format: 'pem' }).toString(),
      notAfter: 0,
    })),
    sequence: (previous?.sequence ?? 0) + 1,
    updatedAt: now,
  };
}

/** Whether two stored bundles hold the same authorities (in any order); sequence and times are not compared. */
export function sameAuthorities(a: StoredBundle, b: StoredBundle): boolean {
  const x509 = (s: StoredBundle): string[] => s.x509Authorities.map((d) => d.toString('base64')).sort();
  const jwt = (s: StoredBundle): string[] => s.jwtAuthorities.map((k) => `${k.kid}\0${k.publicKeyPem}`).sort();
  return JSON.stringify([x509(a), jwt(a)]) === JSON.stringify([x509(b), jwt(b)]);
}

/**
 * A federated bundle an operator hands over (`bundle set`, `federation create|update --bundle-path`): a SPIFFE bundle
 * document or PEM CA certificates; `format` "spiffe" or "pem", or empty to tell them apart by the first character.
 * A SPIFFE document is read as a partner's (federatedBundleFromSpiffeJson: unusable keys left out, a 64-bit sequence
 * accepted), but one that holds a key twice, or leaves nothing to trust, is refused (the latter with the reasons its
 * keys were ignored). `onIgnored` hears why keys were left out (or read with a flaw) of a bundle that is taken: the
 * operator must hear of a root of the partner's that will not be trusted, not only the poller's log.
 */
export function federatedBundleFromText(
  trustDomain: string, text: string, format: string | undefined, previous: StoredBundle | undefined, now: number,
  onIgnored?: (reasons: readonly string[]) => void,
): StoredBundle {
  const body = text.trim();
  if (body === '') throw invalidArgument('bundle is empty: pass a SPIFFE bundle (JSON) or PEM CA certificates');
  const kind = format || (body.startsWith('{') ? 'spiffe' : 'pem');
  let stored: StoredBundle;
  let ignored: readonly string[] = [];
  if (kind === 'spiffe') {
    const doc = federatedBundleFromSpiffeJson(trustDomain, body);
    // JSON.parse keeps the last of a repeated key ("keys" twice): the document would say two things and mean one.
    refuseDuplicateKeys(text, `the SPIFFE bundle for ${trustDomain}`);
    ignored = doc.ignored;
    stored = storedFederatedBundle(trustDomain, doc.bundle, previous, now);
  } else if (kind === 'pem') {
    const ders = pemToDerList(body);
    ders.forEach((der, i) => {
      if (!parseCertificate(der).isCa) throw invalidArgument('every certificate in a federated bundle must be a CA certificate');
      checkWritableX509Authority(der, `certificate ${i + 1} of the bundle`);
    });
    stored = { trustDomain, x509Authorities: ders, jwtAuthorities: [], sequence: (previous?.sequence ?? 0) + 1, updatedAt: now };
  } else {
    throw invalidArgument(`format "${format}" must be spiffe or pem`);
  }
  if (stored.x509Authorities.length === 0 && stored.jwtAuthorities.length === 0) {
    // An operator who means to stop trusting the domain deletes its bundle; this one is most likely a mistake.
    const why = ignored.length === 0 ? '' : ` (${ignored.join('; ')})`;
    throw invalidArgument(`the bundle for ${trustDomain} holds no usable X.509 authorities and no JWT keys${why}`);
  }
  if (ignored.length > 0) onIgnored?.(ignored);
  return stored;
}

/**
 * Whether `trustDomain`'s bundle holds a root whose CA certificate carries the SPIFFE ID of another trust domain, which
 * it SHOULD NOT (X509-SVID §3.2: a signing certificate is an SVID of its own trust domain): most likely the bundle, or
 * the bundle endpoint URL, is the other domain's, and trusted as `trustDomain`'s, that CA could vouch for any SPIFFE ID
 * of `trustDomain`. A sentence for a warning (a SHOULD allows the root; SPIRE accepts it silently), and the domains
 * named, for the advice, which depends on where the bundle came from.
 */
export function rootsOfAnotherTrustDomain(trustDomain: string, x509Authorities: readonly Buffer[]): { message: string; trustDomains: string[] } | undefined {
  const found: string[] = [];
  const domains = new Set<string>();
  x509Authorities.forEach((der, i) => {
    let uris: readonly string[];
    try {
      uris = parseCertificate(der).uriSans;
    } catch {
      return; // refused where the bundle is read
    }
    for (const uri of uris) {
      let td: string;
      try {
        td = parseSpiffeId(uri).trustDomain;
      } catch {
        continue; // a URI that is no SPIFFE ID names no trust domain
      }
      if (td === trustDomain) continue;
      found.push(`root ${i + 1} carries ${uri}`);
      domains.add(td);
    }
  });
  if (found.length === 0) return undefined;
  return {
    message: `the bundle of ${trustDomain} holds a CA of another trust domain (${found.join(', ')}), trusted for ${trustDomain} all the same`,
    trustDomains: [...domains],
  };
}
