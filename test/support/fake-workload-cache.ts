/**
 * An in-memory WorkloadCache for the Workload API handler tests: entries matched by one selector, SVIDs issued by a
 * TestCa (openssl-made certificates, so the API's output is checked against keys and chains meshid did not build),
 * JWT-SVIDs signed for real with an EC key published in the own bundle, and counters for what the handler did
 * (subscribers, JWT requests). Tests drive issuance, rotation, federation and removal.
 */
import { type KeyObject } from 'node:crypto';
import { permissionDenied } from '../../src/common/errors.js';
import { signJwtSvid } from '../../src/common/jwt/jwt-svid.js';
import type { TrustBundle } from '../../src/common/spiffe/bundle.js';
import type { Selector } from '../../src/common/spiffe/selector.js';
import type { IdentitySnapshot, JwtSvidResult, WorkloadCache, WorkloadSvid } from '../../src/agent/cache/workload-cache.js';
import { FakeEntryCache, type FakeEntryFields } from './fake-entry-cache.js';
import { TestCa } from './fake-sds-cache.js';
import { jobFreeKeyPair } from './job-free-key-pair.js';

export { TestCa };

/** A JWT signing key as a trust domain publishes it. */
export interface TestJwtKey {
  kid: string;
  privateKey: KeyObject;
  publicKey: KeyObject;
}

export function makeJwtKey(kid: string): TestJwtKey {
  const { privateKey, publicKey } = jobFreeKeyPair('ec', { namedCurve: 'prime256v1' });
  return { kid, privateKey, publicKey };
}

interface FakeEntry extends FakeEntryFields {
  readonly hint: string;
}

export interface FetchJwtCall {
  selectors: readonly Selector[];
  audience: readonly string[];
  spiffeId: string | undefined;
}

/** Entries, bundles and notification as fake-entry-cache.ts describes; JWT-SVIDs signed for real. */
export class FakeWorkloadCache extends FakeEntryCache<FakeEntry> implements WorkloadCache {
  readonly jwtKey: TestJwtKey = makeJwtKey('own-key-1');
  /** JWT-SVID lifetime in seconds. */
  jwtTtlSeconds = 300;
  readonly jwtCalls: FetchJwtCall[] = [];
  private ownBundle: TrustBundle;
  private ownSequence = 1;

  constructor(
    readonly ca: TestCa,
    /** Milliseconds "now" for JWT iat/exp; defaults to the wall clock. */
    private readonly now: () => number = () => Date.now(),
  ) {
    super();
    this.ownBundle = this.makeOwnBundle();
  }

  /** Registers an entry for `selector` ("unix:uid:1000"); its SVID is issued unless `issued` is false. */
  addEntry(selector: string, spiffeId: string, options: { issued?: boolean; federatesWith?: string[]; hint?: string } = {}): void {
    const hint = options.hint ?? '';
    const svid = options.issued === false ? undefined : this.svidFor(spiffeId, hint);
    this.entries.push({ selector, spiffeId, hint, svid, federatesWith: options.federatesWith ?? [] });
    this.notify();
  }

  /** Issues (or re-issues: a rotation, new key and serial) the SVID of every entry with this SPIFFE ID. */
  issue(spiffeId: string): void {
    for (const e of this.entries) if (e.spiffeId === spiffeId) e.svid = this.svidFor(spiffeId, e.hint);
    this.notify();
  }

  rotate(spiffeId: string): void {
    this.issue(spiffeId);
  }

  /** Drops the SVID of every entry with this SPIFFE ID, as when it expires with the server unreachable. */
  withdraw(spiffeId: string): void {
    for (const e of this.entries) if (e.spiffeId === spiffeId) e.svid = undefined;
    this.notify();
  }

  /** A new own bundle object with the next sequence; `jwtKeys` replaces the published JWT keys when given. */
  bumpOwnBundle(jwtKeys?: TestJwtKey[]): TrustBundle {
    this.ownSequence++;
    this.ownBundle = this.makeOwnBundle(jwtKeys);
    this.notify();
    return this.ownBundle;
  }

  subscriberCount(): number {
    return this.listeners.size;
  }

  snapshot(selectors: readonly Selector[]): IdentitySnapshot {
    const matching = this.matching(selectors);
    return {
      entitled: matching.length > 0,
      svids: matching.flatMap((e) => (e.svid === undefined ? [] : [e.svid])),
      defaultSvid: matching[0]?.svid,
      complete: matching.every((e) => e.svid !== undefined),
      signing: new Set(matching.filter((e) => e.svid === undefined).map((e) => e.spiffeId)),
      withoutSvid: new Set(matching.filter((e) => e.svid === undefined).map((e) => e.spiffeId)),
      defaultSigning: matching[0] !== undefined && matching[0].svid === undefined,
      bundle: this.ownBundle,
      federatedBundles: this.federatedBundlesOf(matching),
    };
  }

  async fetchJwtSvids(selectors: readonly Selector[], audience: readonly string[], spiffeId?: string): Promise<JwtSvidResult[]> {
    this.jwtCalls.push({ selectors, audience, spiffeId });
    const matching = this.matching(selectors).filter((e) => spiffeId === undefined || e.spiffeId === spiffeId);
    if (matching.length === 0) throw permissionDenied('not entitled');
    const iat = Math.floor(this.now() / 1000);
    const exp = iat + this.jwtTtlSeconds;
    return matching.map((e) => ({
      spiffeId: e.spiffeId,
      hint: e.hint,
      token: signJwtSvid({ privateKey: this.jwtKey.privateKey, kid: this.jwtKey.kid, sub: e.spiffeId, aud: [...audience], iat, exp }),
      expiresAt: exp * 1000,
    }));
  }

  private svidFor(spiffeId: string, hint: string): WorkloadSvid {
    return { ...this.ca.issue(spiffeId), hint };
  }

  private makeOwnBundle(jwtKeys: TestJwtKey[] = [this.jwtKey]): TrustBundle {
    return {
      ...this.ca.bundle(this.ownSequence),
      jwtAuthorities: jwtKeys.map((k) => ({ kid: k.kid, publicKey: k.publicKey })),
    };
  }
}

/** A foreign trust domain's bundle: its root and (optionally) a JWT key. */
export function foreignBundle(ca: TestCa, sequence: number, jwtKey?: TestJwtKey): TrustBundle {
  return { ...ca.bundle(sequence), jwtAuthorities: jwtKey === undefined ? [] : [{ kid: jwtKey.kid, publicKey: jwtKey.publicKey }] };
}

/**
 * What the cache gives a caller entitled to `svids`, all signed and nothing signing: the first is the default, and
 * `bundle` and `federatedBundles` come with them; `overrides` change any part.
 */
export function servedSnapshot(svids: WorkloadSvid[], bundle: TrustBundle, federatedBundles: TrustBundle[], overrides: Partial<IdentitySnapshot> = {}): IdentitySnapshot {
  return {
    entitled: true,
    svids,
    defaultSvid: svids[0],
    complete: true,
    signing: new Set(),
    withoutSvid: new Set(),
    defaultSigning: false,
    bundle,
    federatedBundles,
    ...overrides,
  };
}
