/**
 * Shared kit of the agent unit tests: a real CA (the server's CaManager on a temp SQLite datastore, driven by a
 * FakeClock) to sign the agent's CSRs, entries in the agent's shape, and SVIDs issued for them.
 */
import type { KeyObject } from 'node:crypto';
import { FakeClock } from '../../../src/common/clock.js';
import { silentLogger, type Logger } from '../../../src/common/log.js';
import type { TrustBundle } from '../../../src/common/spiffe/bundle.js';
import { parseCertificate } from '../../../src/common/x509/certificate.js';
import { parseCsr } from '../../../src/common/x509/csr.js';
import { exportPkcs8Der, generateKeyPair } from '../../../src/common/x509/keys.js';
import { entryFromMessage, type AgentEntry } from '../../../src/agent/cache/agent-entry.js';
import type { EntryMessage } from '../../../src/common/entry-message.js';
import { IdentityCache } from '../../../src/agent/cache/identity-cache.js';
import type { SignedItem } from '../../../src/agent/cache/svid-issuer.js';
import type { WorkloadSvid } from '../../../src/agent/cache/workload-cache.js';
import type { CaManager } from '../../../src/server/ca/ca-manager.js';
import { openTestCa, tempDir } from '../../support/server-kit.js';

export const HOUR = 3_600_000;
export const DAY = 24 * HOUR;

let counter = 0;

/** An entry with sensible defaults; `selectors` as "type:value" strings. */
export function entry(spiffePath: string, selectors: string[], extra: Partial<EntryMessage> = {}): AgentEntry {
  counter++;
  return entryFromMessage({
    id: `e-${spiffePath.replace(/\W/g, '')}-${counter}`,
    spiffe_id: `spiffe://example.org/${spiffePath}`,
    parent_id: 'spiffe://example.org/node',
    selectors: selectors.map((s) => {
      const i = s.indexOf(':');
      return { type: s.slice(0, i), value: s.slice(i + 1) };
    }),
    x509_svid_ttl: 86400,
    jwt_svid_ttl: 300,
    revision: counter,
    created_at: 1_700_000_000 + counter,
    ...extra,
  });
}

export interface AgentFixture {
  readonly clock: FakeClock;
  readonly ca: CaManager;
  bundle(): TrustBundle;
  /** An SVID for the entry, signed now by the test CA, with its key. */
  issue(e: AgentEntry, ttlMs?: number): WorkloadSvid & { key: KeyObject };
  /** A SignX509Svids stand-in backed by the test CA, for the cache's entries; `calls` records every batch. */
  signer(cache: IdentityCache): { sign: (items: ReadonlyArray<{ entryId: string; csr: Buffer }>) => Promise<SignedItem[]>; calls: string[][] };
  /** A cache with the fixture's bundle, ready. */
  cache(signJwt?: ConstructorParameters<typeof IdentityCache>[0]['signJwtSvid'], log?: Logger): IdentityCache;
  close(): Promise<void>;
}

export async function openAgentFixture(start = Date.UTC(2026, 0, 1)): Promise<AgentFixture> {
  const dir = tempDir('meshid-agent-unit-');
  const clock = new FakeClock(start);
  const t = await openTestCa(dir.dir, {}, clock);
  const fixture: AgentFixture = {
    clock,
    ca: t.ca,
    bundle: () => t.ca.bundle(),
    issue(e, ttlMs = DAY) {
      const { privateKey, publicKey } = generateKeyPair('ec-p256');
      const signed = t.ca.signX509Svid({ datacenter: 'east', publicKey, spiffeId: e.spiffeId, ttlMs });
      const leaf = parseCertificate(signed.chain[0]!);
      return {
        entryId: e.id,
        spiffeId: e.spiffeId,
        hint: e.hint,
        chain: signed.chain,
        privateKey: exportPkcs8Der(privateKey),
        notBefore: leaf.notBefore,
        notAfter: leaf.notAfter,
        version: leaf.serialHex,
        key: privateKey,
      };
    },
    signer(cache) {
      const calls: string[][] = [];
      return {
        calls,
        sign: async (items) => {
          calls.push(items.map((i) => i.entryId));
          return items.map((i) => {
            const e = cache.entry(i.entryId);
            if (e === undefined) return { entryId: i.entryId, code: 7, message: 'not authorized', chain: [] };
            const signed = t.ca.signX509Svid({ datacenter: 'east', publicKey: parseCsr(i.csr).publicKey, spiffeId: e.spiffeId, ttlMs: e.x509SvidTtlSeconds * 1000 });
            return { entryId: i.entryId, code: 0, message: '', chain: signed.chain };
          });
        },
      };
    },
    cache(signJwt, log) {
      const c = new IdentityCache({
        clock,
        log: log ?? silentLogger(),
        signJwtSvid: signJwt ?? (async () => Promise.reject(new Error('no JWT signer in this test'))),
      });
      c.apply({ bundle: t.ca.bundle() });
      c.markReady();
      return c;
    },
    close: async () => {
      await t.close();
      dir.cleanup();
    },
  };
  return fixture;
}

/**
 * A token shaped as a JWT-SVID with these claims and no valid signature: what a stubbed SignJwtSvid answers (the cache
 * reads the token's `sub`, and its `kid`, which must be in the cache's bundle; signatures are the server's and the
 * validators' business, tested there).
 */
export function unsignedJwt(claims: Record<string, unknown>, kid?: string): string {
  const part = (o: unknown): string => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${part({ alg: 'ES256', kid, typ: 'JWT' })}.${part(claims)}.c2ln`;
}
