import type { TrustBundle } from '../../common/spiffe/bundle.js';
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
