import { createHash } from 'node:crypto';
import { boolean, implicitPrimitive, namedBitString, octetString, oid, sequence, smallInteger } from './der.js';
import { children, DerError, expectTag, readBitStringBytes, readBoolean, readOid, readSingle, readSmallInteger, value } from './der-reader.js';

/**
 * The certificate extensions meshid writes and reads (RFC 5280 §4.2), encoded and decoded in one place so the
 * certificates it builds and the checks it runs agree on every bit.
 */

/** KeyUsage bit numbers (RFC 5280 §4.2.1.3). */
export const KeyUsageBit = {
  digitalSignature: 0,
  nonRepudiation: 1,
  keyEncipherment: 2,
  dataEncipherment: 3,
  keyAgreement: 4,
  keyCertSign: 5,
  cRLSign: 6,
  encipherOnly: 7,
  decipherOnly: 8,
} as const;
export type KeyUsageName = keyof typeof KeyUsageBit;

/** A complete Extension SEQUENCE; DER omits `critical` when FALSE (its DEFAULT). */
export function extension(extnId: string, critical: boolean, extnValue: Buffer): Buffer {
  return critical ? sequence(oid(extnId), boolean(true), octetString(extnValue)) : sequence(oid(extnId), octetString(extnValue));
}

/** BasicConstraints value; DER omits cA when FALSE, so an end-entity's value is an empty SEQUENCE. */
export function basicConstraintsValue(ca: boolean, pathLen?: number): Buffer {
  const parts: Buffer[] = [];
  if (ca) parts.push(boolean(true));
  if (ca && pathLen !== undefined) parts.push(smallInteger(pathLen));
  return sequence(...parts);
}

export function keyUsageValue(usages: readonly KeyUsageName[]): Buffer {
  return namedBitString(usages.map((u) => KeyUsageBit[u]));
}

export function extKeyUsageValue(oids: readonly string[]): Buffer {
  return sequence(...oids.map(oid));
}

export function subjectKeyIdentifierValue(keyId: Buffer): Buffer {
  return octetString(keyId);
}

/** AuthorityKeyIdentifier with only keyIdentifier [0] (RFC 5280 §4.2.1.1). */
export function authorityKeyIdentifierValue(keyId: Buffer): Buffer {
  return sequence(implicitPrimitive(0, keyId));
}

/** GeneralNames with URIs ([6] IA5String) first, then DNS names ([2] IA5String). */
export function subjectAltNameValue(uris: readonly string[], dnsNames: readonly string[]): Buffer {
  const names = [...uris.map((u) => implicitPrimitive(6, ia5Bytes(u))), ...dnsNames.map((d) => implicitPrimitive(2, ia5Bytes(d)))];
  return sequence(...names);
}

function ia5Bytes(s: string): Buffer {
  // Printable ASCII only: control characters have no business in a URI or DNS name.
  if (!/^[\x21-\x7e]+$/.test(s)) throw new RangeError('SAN values must be non-empty printable ASCII');
  return Buffer.from(s, 'latin1');
}

/** RFC 5280 §4.2.1.2 method (1): SHA-1 of the subjectPublicKey BIT STRING's bytes. */
export function keyIdentifier(subjectPublicKey: Buffer): Buffer {
  return createHash('sha1').update(subjectPublicKey).digest();
}

/** The method-(1) key identifier of a DER SubjectPublicKeyInfo. Throws DerError if it is not one. */
export function keyIdentifierOfSpki(spki: Buffer): Buffer {
  const [alg, bits, ...rest] = children(expectTag(readSingle(spki, 'SubjectPublicKeyInfo'), 0x30, 'SubjectPublicKeyInfo'));
  expectTag(alg, 0x30, 'SubjectPublicKeyInfo algorithm');
  if (rest.length > 0) throw new DerError('SubjectPublicKeyInfo has extra fields');
  return keyIdentifier(readBitStringBytes(expectTag(bits, 0x03, 'subjectPublicKey')));
}

// ---- decoding ----

export function decodeBasicConstraints(v: Buffer): { ca: boolean; pathLen?: number } {
  const parts = children(expectTag(readSingle(v, 'basicConstraints'), 0x30, 'basicConstraints'));
  let ca = false;
  let i = 0;
  if (parts[i]?.tag === 0x01) ca = readBoolean(parts[i++]!);
  const pathLen = parts[i]?.tag === 0x02 ? readSmallInteger(parts[i++]!) : undefined;
  if (i !== parts.length) throw new DerError('basicConstraints has unexpected fields');
  return pathLen === undefined ? { ca } : { ca, pathLen };
}

export function decodeKeyUsage(v: Buffer): KeyUsageName[] {
  const t = expectTag(readSingle(v, 'keyUsage'), 0x03, 'keyUsage');
  const bytes = value(t);
  if (bytes.length === 0 || bytes[0]! > 7) throw new DerError('malformed keyUsage BIT STRING');
  const out: KeyUsageName[] = [];
  for (const [name, bit] of Object.entries(KeyUsageBit) as [KeyUsageName, number][]) {
    const byte = bytes[1 + (bit >> 3)];
    if (byte !== undefined && byte & (0x80 >> (bit & 7))) out.push(name);
  }
  return out;
}

export function decodeExtKeyUsage(v: Buffer): string[] {
  return children(expectTag(readSingle(v, 'extKeyUsage'), 0x30, 'extKeyUsage')).map((t) => readOid(expectTag(t, 0x06, 'KeyPurposeId')));
}

export function decodeSubjectKeyIdentifier(v: Buffer): Buffer {
  return value(expectTag(readSingle(v, 'subjectKeyIdentifier'), 0x04, 'subjectKeyIdentifier'));
}

export function decodeAuthorityKeyIdentifier(v: Buffer): Buffer | undefined {
  const parts = children(expectTag(readSingle(v, 'authorityKeyIdentifier'), 0x30, 'authorityKeyIdentifier'));
  const keyId = parts.find((p) => p.tag === 0x80);
  return keyId === undefined ? undefined : value(keyId);
}

export interface SubjectAltNames {
  uris: string[];
  dnsNames: string[];
  /** Count of GeneralNames of other kinds (IP addresses, emails, ...), which meshid neither writes nor interprets. */
  others: number;
}

export function decodeSubjectAltName(v: Buffer): SubjectAltNames {
  const out: SubjectAltNames = { uris: [], dnsNames: [], others: 0 };
  for (const n of children(expectTag(readSingle(v, 'subjectAltName'), 0x30, 'subjectAltName'))) {
    if (n.tag === 0x86) out.uris.push(value(n).toString('latin1'));
    else if (n.tag === 0x82) out.dnsNames.push(value(n).toString('latin1'));
    else out.others++;
  }
  return out;
}
