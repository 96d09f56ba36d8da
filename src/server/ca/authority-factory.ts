import { randomBytes, type KeyObject } from 'node:crypto';
import { failedPrecondition, internal } from '../../common/errors.js';
import { formatDuration } from '../../common/duration.js';
import { generateKeyPair, type KeyType } from '../../common/x509/keys.js';
import { parseCertificate, type ParsedCertificate } from '../../common/x509/certificate.js';
import { createIntermediateCertificate, createRootCertificate } from '../../common/x509/ca-certificates.js';
import { LeafSigner } from '../../common/x509/leaf-signer.js';
import { checkUpstreamLifetime, type UpstreamCa } from './upstream-ca.js';
import type { CaRecord } from './ca-journal.js';
import type { LoadedAuthority } from './loaded-authority.js';

/** Back-dating of certificates, against clock skew between hosts (SPIRE uses 10 s as well). */
export const BACKDATE_MS = 10_000;

/** What making an authority needs of the CA settings. */
export interface AuthoritySettings {
  trustDomain: string;
  caKeyType: KeyType;
  intermediateTtlMs: number;
  rootTtlMs: number;
  jwtKeyTtlMs: number;
  upstreamCa?: UpstreamCa | undefined;
}

/**
 * Makes new roots, datacenter intermediates and JWT keys, each in state 'prepared' (the rotation plan decides the
 * state it enters the journal with). Every key goes to disk through `writeKey` before the authority is returned:
 * a key file is always written before the journal row that names it.
 */
export class AuthorityFactory {
  constructor(
    private readonly settings: AuthoritySettings,
    private readonly writeKey: (keyId: string, key: KeyObject) => void,
  ) {}

  async newRoot(now: number): Promise<LoadedAuthority> {
    const upstream = this.settings.upstreamCa;
    const id = newAuthorityId('root');
    if (upstream) {
      checkUpstreamLifetime(upstream, now, this.settings.intermediateTtlMs);
      this.writeKey(id, upstream.privateKey);
      const root = caAuthority(id, 'root', '', upstream.privateKey, upstream.certDer, now);
      root.record.fromUpstreamCa = true;
      if (upstream.bundleDer !== undefined) {
        // Kept with the root: chains under it need them for as long as it lives, whatever files a restart brings.
        root.record.upstreamChainDer = [...upstream.chainDer];
        root.record.upstreamAnchorsDer = [...upstream.bundleDer];
      }
      return root;
    }
    const { privateKey, publicKey } = generateKeyPair(this.settings.caKeyType);
    this.writeKey(id, privateKey);
    const certDer = await createRootCertificate({
      trustDomain: this.settings.trustDomain,
      privateKey,
      publicKey,
      notBefore: now - BACKDATE_MS,
      notAfter: now + this.settings.rootTtlMs,
    });
    const root = caAuthority(id, 'root', '', privateKey, certDer, now);
    root.record.fromUpstreamCa = false;
    return root;
  }

  /** Refused (failed_precondition) when `root` or a CA of the upstream PKI above it ends before the intermediate would. */
  async newIntermediate(datacenter: string, root: LoadedAuthority, now: number): Promise<LoadedAuthority> {
    if (root.cert === undefined) throw internal('root authority without certificate');
    const notAfter = now + this.settings.intermediateTtlMs;
    if (notAfter > root.cert.notAfter) {
      throw failedPrecondition(
        `the active root expires ${new Date(root.cert.notAfter).toISOString()}, before a new ${formatDuration(this.settings.intermediateTtlMs)} intermediate for ${datacenter} would: rotate the root (or renew the upstream CA) or lower intermediate_ttl`,
      );
    }
    // Under an upstream PKI every served chain also needs the CAs above the root: the first of them to expire ends it.
    // Of the bundle's roots, only those the chain ends at count (the one living longest, if the PKI renewed it under
    // the same name and key): another root published beside them, say the PKI's old one during its root rotation,
    // anchors none of these chains and must not hold back the intermediates.
    const chain = (root.record.upstreamChainDer ?? []).map((der) => parseCertificate(der));
    const last = chain[chain.length - 1] ?? root.cert;
    const anchor = (root.record.upstreamAnchorsDer ?? [])
      .map((der) => parseCertificate(der))
      .filter((a) => a.structure.subjectName.equals(last.structure.issuerName))
      .filter((a) => a.subjectKeyId === undefined || last.authorityKeyId === undefined || a.subjectKeyId === last.authorityKeyId)
      .reduce<ParsedCertificate | undefined>((latest, c) => (latest === undefined || c.notAfter > latest.notAfter ? c : latest), undefined);
    const above = anchor === undefined ? chain : [...chain, anchor];
    const first = above.reduce<ParsedCertificate | undefined>((soonest, c) => (soonest === undefined || c.notAfter < soonest.notAfter ? c : soonest), undefined);
    if (first !== undefined && notAfter > first.notAfter) {
      throw failedPrecondition(
        `the upstream PKI's CA "${first.subject}" expires ${new Date(first.notAfter).toISOString()}, before a new ${formatDuration(this.settings.intermediateTtlMs)} intermediate for ${datacenter} would, and chains end with it: renew it in the upstream PKI or lower intermediate_ttl`,
      );
    }
    const { privateKey, publicKey } = generateKeyPair(this.settings.caKeyType);
    const id = newAuthorityId(`int-${datacenter}`);
    this.writeKey(id, privateKey);
    const certDer = await createIntermediateCertificate({
      trustDomain: this.settings.trustDomain,
      datacenter,
      publicKey,
      issuerCertDer: root.cert.der,
      issuerPrivateKey: root.key,
      notBefore: now - BACKDATE_MS,
      notAfter,
    });
    return caAuthority(id, 'intermediate', datacenter, privateKey, certDer, now);
  }

  newJwtKey(now: number): LoadedAuthority {
    // JWT-SVIDs are always ES256: the one algorithm every SPIFFE validator is required to understand in practice.
    const { privateKey, publicKey } = generateKeyPair('ec-p256');
    const id = newAuthorityId('jwt');
    this.writeKey(id, privateKey);
    const record: CaRecord = {
      id,
      kind: 'jwt',
      datacenter: '',
      state: 'prepared',
      keyId: id,
      publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
      notBefore: now,
      notAfter: now + this.settings.jwtKeyTtlMs,
      createdAt: now,
      updatedAt: now,
    };
    return { record, key: privateKey };
  }
}

function newAuthorityId(prefix: string): string {
  return `${prefix}-${randomBytes(8).toString('hex')}`;
}

function caAuthority(id: string, kind: 'root' | 'intermediate', datacenter: string, key: KeyObject, certDer: Buffer, now: number): LoadedAuthority {
  const cert = parseCertificate(certDer);
  const record: CaRecord = {
    id,
    kind,
    datacenter,
    state: 'prepared',
    certDer,
    keyId: id,
    notBefore: cert.notBefore,
    notAfter: cert.notAfter,
    createdAt: now,
    updatedAt: now,
  };
  const a: LoadedAuthority = { record, key, cert };
  if (kind === 'intermediate') a.signer = new LeafSigner(certDer, key);
  return a;
}
