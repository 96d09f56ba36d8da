import { createHash, X509Certificate, type KeyObject } from 'node:crypto';
import { isJsonObject, parseJsonObject } from '../json-object.js';
import { invalidArgument, isMeshidError } from '../errors.js';
import { jwkToPublicKey, publicJwk, type Jwk } from '../jwt/jwk.js';
import { parseTrustDomain } from './spiffe-id.js';

/**
 * A trust domain's bundle (SPIFFE Trust Domain and Bundle §3): the X.509 roots and JWT signing keys that
 * authenticate its SVIDs. Every wire format below is derived from this one value.
 */
export interface TrustBundle {
  /** Bare trust domain name, e.g. "example.org" (not spiffe://…). */
  trustDomain: string;
  /** DER of self-signed CA certificates: roots only, never intermediates (SPEC-NOTES §4). */
  x509Authorities: Buffer[];
  /** JWT-SVID signing keys, each with a non-empty kid unique in the bundle. */
  jwtAuthorities: Array<{ kid: string; publicKey: KeyObject }>;
  /** spiffe_sequence: changes on every content change. */
  sequence: number;
  /** spiffe_refresh_hint in seconds. */
  refreshHintSeconds?: number;
}

const X509_SVID_USE = 'x509-svid';
const JWT_SVID_USE = 'jwt-svid';
/**
 * Key types meshid can use, by `use`; others are ignored as Bundle §4.2.1 requires of consumers. An X.509 root is its
 * certificate, whose key may be Ed25519 (RFC 8037 OKP; not Ed448, see OKP_CURVES in jwk.ts), as OpenSSL, Node and Go
 * verify them; a JWT-SVID key is RSA or EC, as JWT-SVID §3 allows RS, ES and PS algorithms only.
 */
const USABLE_KTY: Readonly<Record<string, ReadonlySet<string>>> = {
  'x509-svid': new Set(['EC', 'RSA', 'OKP']),
  'jwt-svid': new Set(['EC', 'RSA']),
};
/** Standard base64 with padding (RFC 7517 §4.7: x5c is base64, not base64url). */
const BASE64_RE = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

function parseCertificate(der: Buffer, label: string): X509Certificate {
  try {
    return new X509Certificate(der);
  } catch (err) {
    throw invalidArgument(`${label} is not a DER X.509 certificate`, err);
  }
}

/** A bundle entry for an X.509 root: its public key, use x509-svid, exactly one x5c, no kid (SPEC-NOTES §6). */
function x509AuthorityJwk(der: Buffer, label: string): Jwk {
  const cert = parseCertificate(der, label);
  return { ...publicJwk(cert.publicKey, ''), use: X509_SVID_USE, x5c: [der.toString('base64')] };
}

/**
 * Why `der` cannot be an x509-svid key of a SPIFFE bundle document as meshid writes one — its public key is not one
 * publicJwk writes (EC on P-256, P-384 or P-521, RSA or Ed25519): a DSA or Ed448 key, say, or EC on another curve — or
 * undefined when it can. `label` names the certificate in the reason. Throws invalid_argument for a DER that is not
 * a certificate.
 */
function unwritableX509Authority(der: Buffer, label: string): string | undefined {
  const cert = parseCertificate(der, label);
  try {
    publicJwk(cert.publicKey, '');
    return undefined;
  } catch (err) {
    if (!isMeshidError(err, 'invalid_argument')) throw err;
    const key = cert.publicKey;
    const curve = key.asymmetricKeyDetails?.namedCurve;
    const type = curve === undefined ? (key.asymmetricKeyType ?? 'unknown') : `EC ${curve}`;
    return `${label} ("${cert.subject.replace(/\n/g, ', ')}") has ${/^[aeiou]/i.test(type) ? 'an' : 'a'} ${type} key`;
  }
}

/** A bundle key left out of a SPIFFE bundle document because no JWK of meshid's can carry it (writableBundle). */
export interface LeftOutKey {
  readonly trustDomain: string;
  /** What the key is and why it cannot be written, naming the certificate or kid (no key material). */
  readonly problem: string;
  /** The key's identity whatever its position in the bundle: `x509:<sha256 of the certificate>` or `jwt:<kid>`. */
  readonly id: string;
}

/**
 * `b` without the keys its SPIFFE bundle document cannot hold (an X.509 root whose key has no JWK of meshid's — DSA,
 * Ed448, EC off the NIST curves — or such a JWT key), each reported to `onLeftOut`. Every input path refuses such keys
 * now, but a datastore or agent state filled before that may hold one: it must cost that key where a document is
 * written (an agent's saved state, `bundle show --format spiffe`), not the whole document.
 */
export function writableBundle(b: TrustBundle, onLeftOut: (key: LeftOutKey) => void): TrustBundle {
  const x509Authorities = b.x509Authorities.filter((der, i) => {
    const problem = unwritableX509Authority(der, `X.509 authority ${i} of ${b.trustDomain}`);
    if (problem !== undefined) onLeftOut({ trustDomain: b.trustDomain, problem, id: `x509:${createHash('sha256').update(der).digest('hex')}` });
    return problem === undefined;
  });
  const jwtAuthorities = b.jwtAuthorities.filter(({ kid, publicKey }) => {
    try {
      publicJwk(publicKey, kid);
      return true;
    } catch (err) {
      if (!isMeshidError(err, 'invalid_argument')) throw err;
      onLeftOut({ trustDomain: b.trustDomain, problem: `JWT authority "${kid}" of ${b.trustDomain}: ${err.message}`, id: `jwt:${kid}` });
      return false;
    }
  });
  const complete = x509Authorities.length === b.x509Authorities.length && jwtAuthorities.length === b.jwtAuthorities.length;
  return complete ? b : { ...b, x509Authorities, jwtAuthorities };
}

/**
 * Throws invalid_argument unless `der` can be an x509-svid key of a SPIFFE bundle document as meshid writes one
 * (unwritableX509Authority). Every federated root travels to the agents, and is kept by them, in such a document, so
 * a root that cannot be written there must be refused when it is handed over, not fail later. `label` names the
 * certificate in the message.
 */
export function checkWritableX509Authority(der: Buffer, label: string): void {
  const problem = unwritableX509Authority(der, label);
  if (problem === undefined) return;
  throw invalidArgument(
    `${problem}: meshid carries X.509 authorities to its agents, and in "bundle show --format spiffe", as SPIFFE bundle JWKs, which it writes ` +
      'for EC keys on P-256, P-384 or P-521, RSA keys and Ed25519 keys only (not Ed448: SPIRE and go-spiffe refuse a whole bundle ' +
      "document holding an Ed448 key); give the trust domain's roots of those key types",
  );
}

function checkKids(b: TrustBundle): void {
  const seen = new Set<string>();
  for (const { kid } of b.jwtAuthorities) {
    // go-spiffe rejects the whole bundle for an empty kid and silently keeps one of two equal kids.
    if (kid === '') throw invalidArgument(`bundle for ${b.trustDomain} has a JWT authority without a kid`);
    if (seen.has(kid)) throw invalidArgument(`bundle for ${b.trustDomain} has two JWT authorities with kid "${kid}"`);
    seen.add(kid);
  }
}

function checkSequence(value: number, what: string): void {
  if (!Number.isSafeInteger(value) || value < 0) throw invalidArgument(`${what} must be a non-negative integer`);
}

/**
 * The SPIFFE bundle document (Bundle §4; SPEC-NOTES §6) for the bundle endpoint, `bundle show` and federation: a JWK
 * Set whose X.509 roots are `use: "x509-svid"` entries with exactly one standard-base64 `x5c` and no `kid`, whose JWT
 * keys are `use: "jwt-svid"` entries with a `kid`, plus `spiffe_sequence` and (when set) `spiffe_refresh_hint`.
 */
export function bundleToSpiffeJson(b: TrustBundle, options: { indent?: number } = {}): string {
  checkKids(b);
  checkSequence(b.sequence, 'spiffe_sequence');
  const keys: Jwk[] = [
    ...b.x509Authorities.map((der, i) => x509AuthorityJwk(der, `X.509 authority ${i} of ${b.trustDomain}`)),
    ...b.jwtAuthorities.map(({ kid, publicKey }) => ({ ...publicJwk(publicKey, kid), use: JWT_SVID_USE })),
  ];
  const doc: Record<string, unknown> = { keys, spiffe_sequence: b.sequence };
  if (b.refreshHintSeconds !== undefined) {
    checkSequence(b.refreshHintSeconds, 'spiffe_refresh_hint');
    doc['spiffe_refresh_hint'] = b.refreshHintSeconds;
  }
  return JSON.stringify(doc, null, options.indent);
}

/** Whose document is parsed: meshid's own (every flaw is an error) or a partner's (a flawed key is ignored). */
type Origin = 'own' | 'federated';

/**
 * A non-negative integer member. meshid's own documents hold safe integers, as it writes them. A partner's may hold
 * any JSON integer: Bundle §4.1.1 asks for at least 64 bits, which JSON.parse turns into an inexact double above
 * 2^53 (Infinity past ~1.8e308). Such a value is clamped to Number.MAX_SAFE_INTEGER rather than refused: meshid never
 * relies on a partner's spiffe_sequence (what it stores and sends agents is its own counter, see
 * storedFederatedBundle; the partner's is only logged) and bounds the refresh hint to an hour anyway, so the clamp
 * loses nothing, and TrustBundle keeps holding safe integers, which meshid's strict writers insist on.
 */
function optionalInteger(doc: Record<string, unknown>, name: string, label: string, origin: Origin): number | undefined {
  const value = doc[name];
  if (value === undefined) return undefined;
  if (typeof value === 'number' && value >= 0) {
    if (Number.isSafeInteger(value)) return value;
    if (origin === 'federated' && (Number.isInteger(value) || value === Infinity)) return Number.MAX_SAFE_INTEGER;
  }
  throw invalidArgument(`${label}: ${name} must be a non-negative integer`);
}

/**
 * One x509-svid key's certificate (X509-SVID §6). A partner's key with a `kid` (which §6.1 forbids publishers) or
 * with more than one `x5c` value is still read — §6.2 tells consumers to use the first value and ignore the rest —
 * and `note` reports it; meshid's own must be exact.
 */
function readX509Authority(entry: Record<string, unknown>, label: string, origin: Origin, note: (message: string) => void): Buffer {
  const strict = (message: string, federatedOutcome: string): void => {
    if (origin === 'own') throw invalidArgument(message);
    note(`${message}; ${federatedOutcome}`);
  };
  if ('kid' in entry) strict(`${label}: an x509-svid key must not have a kid`, 'the kid is ignored');
  const x5c = entry['x5c'];
  // X509-SVID §6.2: an entry without x5c, or with an empty one, MUST be ignored.
  if (!Array.isArray(x5c) || x5c.length === 0) throw invalidArgument(`${label}: an x509-svid key must have exactly one x5c certificate`);
  if (x5c.length > 1) strict(`${label}: an x509-svid key must have exactly one x5c certificate`, `the first is used, ${x5c.length - 1} more ignored`);
  const [encoded] = x5c as unknown[];
  if (typeof encoded !== 'string' || encoded === '' || !BASE64_RE.test(encoded)) {
    throw invalidArgument(`${label}: x5c[0] is not standard base64`);
  }
  const der = Buffer.from(encoded, 'base64');
  const cert = parseCertificate(der, `${label}: x5c[0]`);
  // go-jose refuses a JWK whose members disagree with its certificate; so does meshid.
  const spki = jwkToPublicKey(entry, label, { okp: true }).export({ type: 'spki', format: 'der' });
  if (!spki.equals(cert.publicKey.export({ type: 'spki', format: 'der' }))) {
    throw invalidArgument(`${label}: the key members do not match the x5c certificate's public key`);
  }
  return der;
}

/** Why a key of type `kty` is of no use as a `use` key. */
function unusableKeyType(use: string, kty: string): string {
  const usable = [...USABLE_KTY[use]!];
  const list = `${usable.slice(0, -1).join(', ')} or ${usable[usable.length - 1]}`;
  const why = use === JWT_SVID_USE && kty === 'OKP' ? ': JWT-SVID §3 allows RS, ES and PS algorithms only, no EdDSA' : '';
  return `${use === X509_SVID_USE ? 'an' : 'a'} ${use} key of type ${JSON.stringify(kty)}, which meshid cannot use (it reads ${use} keys of type ${list}${why})`;
}

/**
 * Why an OKP key of curve `crv` is of no use as an x509-svid key, or undefined for Ed25519 (or a `crv` that is not a
 * string, a flaw jwkToPublicKey reports). Ed448 and the X-curves are key types meshid does not read (OKP_CURVES).
 */
function unreadableOkpCurve(crv: unknown): string | undefined {
  if (typeof crv !== 'string' || crv === 'Ed25519') return undefined;
  const why = crv === 'Ed448' ? ': SPIRE and go-spiffe refuse a whole bundle document holding one, so meshid neither reads nor writes it' : '';
  return `an x509-svid key of type "OKP" on curve ${JSON.stringify(crv)}, which meshid cannot use (it reads OKP keys on Ed25519 only${why})`;
}

/**
 * What a partner's bundle document yields: the bundle, and one line per key meshid ignored or read with a flaw,
 * saying why (for the poller's log and the operator).
 */
export interface FederatedBundleDocument {
  readonly bundle: TrustBundle;
  readonly ignored: readonly string[];
  /**
   * How many of the `ignored` keys are of a type meshid does not read for their use (an EdDSA jwt-svid key, an Ed448
   * or newer-type root): keys Bundle §4.2.1 tells consumers to ignore, published for other consumers, not flaws. A
   * document left with no key once they are ignored is a revocation; one left empty by flawed keys is not.
   */
  readonly unreadableTypes: number;
}

function parseBundleDocument(trustDomain: string, json: string, origin: Origin): FederatedBundleDocument {
  const td = parseTrustDomain(trustDomain);
  const label = `SPIFFE bundle for ${td}`;
  const obj = parseJsonObject(json, label);
  const keys = obj['keys'];
  if (!Array.isArray(keys)) throw invalidArgument(`${label} has no "keys" array`);
  const sequence = optionalInteger(obj, 'spiffe_sequence', label, origin) ?? 0;
  const refreshHintSeconds = optionalInteger(obj, 'spiffe_refresh_hint', label, origin);

  const x509Authorities: Buffer[] = [];
  const jwtAuthorities: TrustBundle['jwtAuthorities'] = [];
  const ignored: string[] = [];
  let unreadableTypes = 0;
  keys.forEach((entry: unknown, i) => {
    const keyLabel = `${label}: keys[${i}]`;
    // Flaws of a key that is still read; reported only if it is, so an ignored key gets one line.
    const notes: string[] = [];
    const note = (message: string): void => void notes.push(message);
    try {
      if (!isJsonObject(entry)) throw invalidArgument(`${keyLabel} is not a JSON object`);
      const key = entry;
      if (typeof key['kty'] !== 'string' || key['kty'] === '') throw invalidArgument(`${keyLabel} has no kty`);
      // Bundle §4.2.1, §4.2.2: a missing or unknown use, or an unknown kty, MUST make a client ignore the JWK.
      const use = key['use'];
      if (typeof use !== 'string' || !Object.hasOwn(USABLE_KTY, use)) return;
      const unreadable = !USABLE_KTY[use]!.has(key['kty'])
        ? unusableKeyType(use, key['kty'])
        : use === X509_SVID_USE && key['kty'] === 'OKP' ? unreadableOkpCurve(key['crv']) : undefined;
      if (unreadable !== undefined) {
        // Ignored as the spec asks, and a partner's reported all the same, so the operator hears why its roots or keys
        // are not trusted; counted apart from flawed keys (unreadableTypes).
        if (origin === 'federated') {
          ignored.push(`${keyLabel}: ${unreadable}; the key is ignored`);
          unreadableTypes++;
        }
        return;
      }
      if (use === X509_SVID_USE) {
        const der = readX509Authority(key, keyLabel, origin, note);
        if (!x509Authorities.some((known) => known.equals(der))) x509Authorities.push(der);
      } else {
        const kid = key['kid'];
        if (typeof kid !== 'string' || kid === '') throw invalidArgument(`${keyLabel}: a jwt-svid key must have a non-empty kid`);
        if (jwtAuthorities.some((k) => k.kid === kid)) throw invalidArgument(`${keyLabel}: duplicate kid "${kid}"`);
        jwtAuthorities.push({ kid, publicKey: jwkToPublicKey(key, keyLabel) });
      }
      ignored.push(...notes);
    } catch (err) {
      // A partner's unusable key is ignored, not its whole bundle (Bundle §4.1.3: what is left may even be nothing).
      if (origin === 'own' || !isMeshidError(err, 'invalid_argument')) throw err;
      ignored.push(`${err.message}; the key is ignored`);
    }
  });
  const bundle: TrustBundle = { trustDomain: td, x509Authorities, jwtAuthorities, sequence };
  if (refreshHintSeconds !== undefined) bundle.refreshHintSeconds = refreshHintSeconds;
  return { bundle, ignored, unreadableTypes };
}

/**
 * Parses meshid's own SPIFFE bundle document (Bundle §4; SPEC-NOTES §6) strictly: a JSON object with a `keys` array;
 * every key an object with a string `kty`; x509-svid keys with exactly one standard-base64 DER certificate in `x5c`,
 * key members matching it and no `kid`; jwt-svid keys with a non-empty, unique `kid` and public members only;
 * safe-integer `spiffe_sequence` / `spiffe_refresh_hint` when present. Keys of missing or unknown `use`, or of
 * unknown `kty`, are ignored, as the spec requires of consumers; repeated roots are kept once. `trustDomain` may be
 * bare or `spiffe://td`. A partner's document goes through federatedBundleFromSpiffeJson instead.
 * Throws MeshidError invalid_argument naming the offending key.
 */
export function bundleFromSpiffeJson(trustDomain: string, json: string): TrustBundle {
  return parseBundleDocument(trustDomain, json, 'own').bundle;
}

/**
 * Parses a partner's SPIFFE bundle document (a bundle endpoint's answer, `bundle set`) as a consumer must (Bundle
 * §4.1.3, §4.2; X509-SVID §6.2): a key meshid cannot use — not an object, no `kty`, a `kty` it does not read for
 * that `use` (x509-svid: EC, RSA, OKP on Ed25519; jwt-svid: EC, RSA), an x509-svid key without `x5c` or with a bad
 * certificate, a jwt-svid key without `kid`, on an unknown curve or with private members, a repeated `kid` — is left
 * out and reported in `ignored` (a key of another `use` is left out silently), so one bad key cannot hold back the
 * rest (a root rotation, say). An
 * x509-svid key with several `x5c` values is read from the first; one with a `kid` is read and reported. A
 * `spiffe_sequence` or `spiffe_refresh_hint` beyond 2^53 is clamped (see optionalInteger). What is left may be empty:
 * with `ignored` empty too, or holding only keys of types meshid does not read (`unreadableTypes`), the partner
 * revoking every key meshid could use (nothing of its trust domain is trusted); with flawed keys in `ignored`, a
 * publishing bug the caller decides about (the poller keeps what it has).
 * Throws MeshidError invalid_argument only for a document that is not a bundle at all: not a JSON object, no `keys`
 * array, a sequence or refresh hint that is not a non-negative integer.
 */
export function federatedBundleFromSpiffeJson(trustDomain: string, json: string): FederatedBundleDocument {
  return parseBundleDocument(trustDomain, json, 'federated');
}

/**
 * The Workload API JWT bundle (WL-API §6.2.2; SPEC-NOTES §6): a plain RFC 7517 JWK Set of the jwt-svid keys only,
 * each with its kid and public members; no `use`, no `x5c`, no `spiffe_*` members. UTF-8 JSON for
 * JWTBundlesResponse.bundles.
 */
export function jwtBundleJwks(b: TrustBundle): string {
  checkKids(b);
  return JSON.stringify({ keys: b.jwtAuthorities.map(({ kid, publicKey }) => publicJwk(publicKey, kid)) });
}

/** The Workload API X.509 bundle (SPEC-NOTES §1, §4): the roots' DER concatenated, no separators. */
export function x509BundleDer(b: TrustBundle): Buffer {
  return Buffer.concat(b.x509Authorities);
}
