import { children, DerError, expectTag, raw, readBitStringBytes, readBoolean, readOid, readSingle, readSmallInteger, readTime, value } from './der-reader.js';

/** One extension as encoded (RFC 5280 §4.1): the OID, the critical flag and the extnValue OCTET STRING contents. */
export interface RawExtension {
  readonly oid: string;
  readonly critical: boolean;
  readonly value: Buffer;
}

/**
 * The fields of an X.509 certificate located by offset (RFC 5280 §4.1), with Names and keys kept as their exact DER
 * so issuers can be copied byte-for-byte into the certificates they sign. Buffers are views into the input.
 */
export interface CertificateStructure {
  readonly tbs: Buffer;
  /** 1, 2 or 3. */
  readonly version: number;
  /** The serial INTEGER's content octets (two's complement, as encoded). */
  readonly serial: Buffer;
  readonly tbsSignatureAlgorithm: Buffer;
  readonly signatureAlgorithm: Buffer;
  readonly signatureAlgorithmOid: string;
  readonly issuerName: Buffer;
  readonly subjectName: Buffer;
  readonly notBefore: number;
  readonly notAfter: number;
  readonly spki: Buffer;
  /** The subjectPublicKey BIT STRING's bytes: the input of an RFC 5280 §4.2.1.2 method-1 key identifier. */
  readonly subjectPublicKey: Buffer;
  readonly extensions: readonly RawExtension[];
  readonly signature: Buffer;
}

/** Walks a DER certificate. Throws DerError on anything that is not a well-formed X.509 certificate. */
export function readCertificateStructure(der: Buffer): CertificateStructure {
  const cert = expectTag(readSingle(der, 'certificate'), 0x30, 'Certificate');
  const [tbsT, sigAlgT, sigT, ...extra] = children(cert);
  if (extra.length > 0) throw new DerError('Certificate has extra fields');
  expectTag(tbsT, 0x30, 'TBSCertificate');
  expectTag(sigAlgT, 0x30, 'signatureAlgorithm');
  expectTag(sigT, 0x03, 'signatureValue');
  const fields = children(tbsT!);
  let i = 0;
  let version = 1;
  if (fields[0]?.tag === 0xa0) {
    const [v] = children(fields[0]);
    version = readSmallInteger(expectTag(v, 0x02, 'version')) + 1;
    i++;
  }
  const serialT = expectTag(fields[i++], 0x02, 'serialNumber');
  const tbsSigT = expectTag(fields[i++], 0x30, 'TBSCertificate.signature');
  const issuerT = expectTag(fields[i++], 0x30, 'issuer');
  const validityT = expectTag(fields[i++], 0x30, 'validity');
  const subjectT = expectTag(fields[i++], 0x30, 'subject');
  const spkiT = expectTag(fields[i++], 0x30, 'subjectPublicKeyInfo');
  const [notBeforeT, notAfterT, ...moreTimes] = children(validityT);
  if (notBeforeT === undefined || notAfterT === undefined || moreTimes.length > 0) throw new DerError('validity must hold two times');
  const [, subjectPublicKeyT] = children(spkiT);
  const subjectPublicKey = readBitStringBytes(expectTag(subjectPublicKeyT, 0x03, 'subjectPublicKey'));

  const extensions: RawExtension[] = [];
  for (; i < fields.length; i++) {
    const f = fields[i]!;
    if (f.tag === 0x81 || f.tag === 0x82) continue; // issuerUniqueID / subjectUniqueID: obsolete, ignored.
    if (f.tag !== 0xa3) throw new DerError(`unexpected TBSCertificate field with tag 0x${f.tag.toString(16)}`);
    if (version !== 3) throw new DerError('extensions require a v3 certificate');
    const [list] = children(f);
    const seen = new Set<string>();
    for (const e of children(expectTag(list, 0x30, 'extensions'))) {
      const parts = children(expectTag(e, 0x30, 'extension'));
      const extOid = readOid(expectTag(parts[0], 0x06, 'extnID'));
      const hasCritical = parts.length === 3;
      if (parts.length !== 2 && !hasCritical) throw new DerError(`extension ${extOid} is malformed`);
      const critical = hasCritical ? readBoolean(parts[1]!) : false;
      const valueT = expectTag(parts[hasCritical ? 2 : 1], 0x04, `extension ${extOid} value`);
      if (seen.has(extOid)) throw new DerError(`extension ${extOid} appears twice (RFC 5280 §4.2)`);
      seen.add(extOid);
      extensions.push({ oid: extOid, critical, value: value(valueT) });
    }
  }
  const sigAlgParts = children(sigAlgT!);
  return {
    tbs: raw(tbsT!),
    version,
    serial: value(serialT),
    tbsSignatureAlgorithm: raw(tbsSigT),
    signatureAlgorithm: raw(sigAlgT!),
    signatureAlgorithmOid: readOid(expectTag(sigAlgParts[0], 0x06, 'signatureAlgorithm OID')),
    issuerName: raw(issuerT),
    subjectName: raw(subjectT),
    notBefore: readTime(notBeforeT),
    notAfter: readTime(notAfterT),
    spki: raw(spkiT),
    subjectPublicKey,
    extensions,
    signature: readBitStringBytes(sigT!),
  };
}
