/**
 * Test kit for the SDS handler: a small PKI made by the openssl CLI (so SDS output is checked against certificates
 * meshid did not build) and an in-memory WorkloadCache whose identities, rotations and federations tests drive.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TrustBundle } from '../../src/common/spiffe/bundle.js';
import type { Selector } from '../../src/common/spiffe/selector.js';
import { formatSelector } from '../../src/common/spiffe/selector.js';
import type { IdentitySnapshot, JwtSvidResult, WorkloadCache, WorkloadSvid } from '../../src/agent/cache/workload-cache.js';
import { FakeEntryCache, type FakeEntryFields } from './fake-entry-cache.js';
import { jobFreeKeyPair } from './job-free-key-pair.js';

const OPENSSL_CONFIG = `
[req]
distinguished_name = dn
[dn]
[root_ext]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[intermediate_ext]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[leaf_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth,clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
subjectAltName = critical,URI:$ENV::MESHID_TEST_SAN
`;

function pemToDer(pem: string): Buffer {
  return Buffer.from(pem.replace(/-----[A-Z ]+-----/g, '').replace(/\s+/g, ''), 'base64');
}

/** A trust domain's root and one intermediate, issuing leaf SVIDs (leaf + intermediate chains) with openssl. */
export class TestCa {
  readonly trustDomain: string;
  readonly rootDer: Buffer;
  readonly intermediateDer: Buffer;
  private readonly dir: string;
  private counter = 0;

  constructor(trustDomain: string) {
    this.trustDomain = trustDomain;
    this.dir = mkdtempSync(join(tmpdir(), 'meshid-sds-ca-'));
    writeFileSync(join(this.dir, 'openssl.cnf'), OPENSSL_CONFIG);
    this.writeKey('root');
    this.openssl(['-subj', `/O=meshid test/CN=${trustDomain} root`, '-key', 'root.key', '-extensions', 'root_ext', '-out', 'root.pem']);
    this.writeKey('intermediate');
    this.openssl([
      '-subj', `/O=meshid test/OU=dc-test/CN=${trustDomain} intermediate`, '-key', 'intermediate.key',
      '-CA', 'root.pem', '-CAkey', 'root.key', '-extensions', 'intermediate_ext', '-out', 'intermediate.pem',
    ]);
    this.rootDer = pemToDer(readFileSync(join(this.dir, 'root.pem'), 'utf8'));
    this.intermediateDer = pemToDer(readFileSync(join(this.dir, 'intermediate.pem'), 'utf8'));
  }

  /** The own-domain bundle: the root only (SPEC-NOTES §4). */
  bundle(sequence = 1): TrustBundle {
    return { trustDomain: this.trustDomain, x509Authorities: [this.rootDer], jwtAuthorities: [], sequence };
  }

  /** A fresh key and leaf for `spiffeId`: every call is a rotation (new key, new serial). */
  issue(spiffeId: string, entryId = spiffeId): WorkloadSvid {
    const name = `leaf${++this.counter}`;
    const keyPem = this.writeKey(name);
    const serial = `0x${randomBytes(16).toString('hex').replace(/^./, '4')}`;
    this.openssl(
      [
        '-subj', `/O=meshid test/CN=${name}`, '-key', `${name}.key`, '-CA', 'intermediate.pem', '-CAkey', 'intermediate.key',
        '-extensions', 'leaf_ext', '-set_serial', serial, '-out', `${name}.pem`,
      ],
      { MESHID_TEST_SAN: spiffeId },
    );
    const leaf = pemToDer(readFileSync(join(this.dir, `${name}.pem`), 'utf8'));
    const now = Date.now();
    return {
      entryId,
      spiffeId,
      hint: '',
      chain: [leaf, this.intermediateDer],
      privateKey: pemToDer(keyPem),
      notBefore: now - 10_000,
      notAfter: now + 3_600_000,
      version: serial,
    };
  }

  dispose(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }

  private writeKey(name: string): string {
    const { privateKey } = jobFreeKeyPair('ec', { namedCurve: 'prime256v1' });
    const pem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    writeFileSync(join(this.dir, `${name}.key`), pem, { mode: 0o600 });
    return pem;
  }

  private openssl(args: string[], env: Record<string, string> = {}): void {
    const full = ['req', '-x509', '-new', '-config', 'openssl.cnf', '-days', '2', '-sha256', ...args];
    const r = spawnSync('openssl', full, { cwd: this.dir, encoding: 'utf8', env: { ...process.env, MESHID_TEST_SAN: 'spiffe://unused', ...env } });
    if (r.error) throw r.error;
    if (r.status !== 0) throw new Error(`openssl ${full.join(' ')} failed: ${r.stdout}${r.stderr}`);
  }
}

interface FakeEntry extends FakeEntryFields {
  /** Its SVID could not be signed and is being retried: not waited for (IdentitySnapshot.signing). */
  signingFailed: boolean;
}

/**
 * An in-memory WorkloadCache: entries, bundles and notification as fake-entry-cache.ts describes; entries match a
 * caller when one of its selectors equals the entry's selector. Streams must compare versions themselves.
 */
export class FakeSdsCache extends FakeEntryCache<FakeEntry> implements WorkloadCache {
  private ownBundle: TrustBundle;

  constructor(readonly ca: TestCa) {
    super();
    this.ownBundle = ca.bundle();
  }

  /**
   * Registers an entry for `selector` ("unix:uid:1000") and issues its SVID unless `issued` is false: then its SVID
   * is being signed, or with `signingFailed` its signing failed and is being retried (not waited for).
   */
  addEntry(selector: string, spiffeId: string, options: { issued?: boolean; federatesWith?: string[]; signingFailed?: boolean } = {}): void {
    const svid = options.issued === false ? undefined : this.ca.issue(spiffeId);
    this.entries.push({ selector, spiffeId, svid, federatesWith: options.federatesWith ?? [], signingFailed: options.signingFailed === true });
    this.changed();
  }

  /** The signing of every entry with this SPIFFE ID that has no SVID failed and is being retried (markUnsigned). */
  failSigning(spiffeId: string): void {
    for (const e of this.entries) if (e.spiffeId === spiffeId && e.svid === undefined) e.signingFailed = true;
    this.changed();
  }

  /** Re-issues the SVID of every entry with this SPIFFE ID (new key and serial), as the agent does at half-life. */
  rotate(spiffeId: string): void {
    for (const e of this.entries) {
      if (e.spiffeId !== spiffeId) continue;
      e.svid = this.ca.issue(spiffeId, e.svid?.entryId);
      e.signingFailed = false;
    }
    this.changed();
  }

  setOwnBundle(bundle: TrustBundle): void {
    this.ownBundle = bundle;
    this.changed();
  }

  /** Like the agent's cache, one snapshot object per selector set until something changes (SDS memoizes on it). */
  private readonly snapshots = new Map<string, IdentitySnapshot>();

  protected override changed(): void {
    this.snapshots.clear();
    super.changed();
  }

  listenerCount(): number {
    return this.listeners.size;
  }

  /** How often a stream asked for its state: what the handler spends per request or notification. */
  snapshotCalls = 0;

  snapshot(selectors: readonly Selector[]): IdentitySnapshot {
    this.snapshotCalls++;
    const key = selectors.map(formatSelector).join('\n');
    let snapshot = this.snapshots.get(key);
    if (snapshot === undefined) this.snapshots.set(key, (snapshot = this.computeSnapshot(selectors)));
    return snapshot;
  }

  private computeSnapshot(selectors: readonly Selector[]): IdentitySnapshot {
    const matching = this.matching(selectors);
    const signing = new Set(matching.filter((e) => e.svid === undefined && !e.signingFailed).map((e) => e.spiffeId));
    return {
      entitled: matching.length > 0,
      svids: matching.flatMap((e) => (e.svid === undefined ? [] : [e.svid])),
      defaultSvid: matching[0]?.svid,
      complete: signing.size === 0,
      signing,
      withoutSvid: new Set(matching.filter((e) => e.svid === undefined).map((e) => e.spiffeId)),
      defaultSigning: matching[0] !== undefined && matching[0].svid === undefined && !matching[0].signingFailed,
      bundle: this.ownBundle,
      federatedBundles: this.federatedBundlesOf(matching),
    };
  }

  fetchJwtSvids(): Promise<JwtSvidResult[]> {
    return Promise.reject(new Error('FakeSdsCache has no JWT-SVIDs'));
  }
}
