import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { certificateInputs, entryFromMessage, entryToMessage } from '../../../src/agent/cache/agent-entry.js';
import { SvidIssuer, type SignedItem } from '../../../src/agent/cache/svid-issuer.js';
import type { IdentityCache } from '../../../src/agent/cache/identity-cache.js';
import { unavailable } from '../../../src/common/errors.js';
import { silentLogger } from '../../../src/common/log.js';
import { parseCertificate } from '../../../src/common/x509/certificate.js';
import { parseCsr } from '../../../src/common/x509/csr.js';
import { importPrivateKey, keyMatchesCertificate } from '../../../src/common/x509/keys.js';
import { entry, openAgentFixture, type AgentFixture } from './agent-fixture.js';

/**
 * The issuer through a server outage: what each retry round costs (the key and CSR of a failed request are sent again,
 * not made again) and the order the entries go in once the server is back. The server is the fixture's CA behind a
 * SignX509Svids stand-in that fails the call UNAVAILABLE while "down", as the agent's client reports a server it cannot
 * reach.
 */

let fx: AgentFixture;
before(async () => (fx = await openAgentFixture()));
after(async () => fx.close());

const MINUTE = 60_000;

/** Lets queued microtasks and the signing promises run. */
const settle = async (): Promise<void> => {
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
};

type Sign = (items: ReadonlyArray<{ entryId: string; csr: Buffer }>) => Promise<SignedItem[]>;

/**
 * An issuer whose server is down while `server.down`; `keysSent` lists, per entry, the public key (SPKI hex) of every
 * CSR that reached the signer, and `calls` the entries of each call in order. `answer` replaces the CA's answers.
 */
function outageIssuer(extra: Partial<ConstructorParameters<typeof SvidIssuer>[0]> = {}, answer?: (cache: IdentityCache, real: Sign) => Sign) {
  const cache = fx.cache();
  const real = fx.signer(cache).sign;
  const sign = answer?.(cache, real) ?? real;
  const server = { down: true };
  const keysSent = new Map<string, string[]>();
  const calls: string[][] = [];
  const issuer = new SvidIssuer({
    cache,
    clock: fx.clock,
    log: silentLogger(),
    random: () => 0.5,
    sign: async (items) => {
      calls.push(items.map((i) => i.entryId));
      for (const i of items) keysSent.set(i.entryId, [...(keysSent.get(i.entryId) ?? []), parseCsr(i.csr).spkiDer.toString('hex')]);
      if (server.down) throw unavailable('meshid-agent cannot reach meshid-server at unix:///tmp/none (SignX509Svids): connect ECONNREFUSED');
      return sign(items);
    },
    ...extra,
  });
  return { cache, issuer, server, keysSent, calls };
}

/** Retry rounds on the injected clock: each advance is past the 5 min cap of the call backoff. */
async function retryRounds(n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    fx.clock.advance(6 * MINUTE);
    await settle();
  }
}

const spkiOf = (chain: readonly Buffer[]): string => parseCertificate(chain[0]!).structure.spki.toString('hex');

test('retry rounds during an outage send each entry\'s one key again instead of making a new one a round; the SVID certifies that key, and its renewal gets a new one', async () => {
  const { cache, issuer, server, keysSent } = outageIssuer();
  const entries = [1, 2, 3].map((i) => entry(`outage-key-${i}`, ['unix:uid:41'], { x509_svid_ttl: 3600 }));
  issuer.request(cache.apply({ upserts: entries }).needSvid);
  await settle();
  await retryRounds(5);
  const firstKeys = new Map<string, string>();
  for (const e of entries) {
    const sent = keysSent.get(e.id)!;
    assert.equal(sent.length, 6, 'the first attempt and five retry rounds reached the signer');
    assert.equal(new Set(sent).size, 1, `one key for ${e.spiffeId} across its six attempts, not one each`);
    firstKeys.set(e.id, sent[0]!);
  }
  server.down = false;
  issuer.kick();
  await settle();
  for (const e of entries) {
    const svid = cache.svid(e.id)!;
    assert.equal(spkiOf(svid.chain), firstKeys.get(e.id), 'the SVID certifies the key kept through the outage');
    assert.ok(keyMatchesCertificate(importPrivateKey(svid.privateKey), svid.chain[0]!), 'and is served with that private key');
    keysSent.set(e.id, []);
  }
  // Another outage across the renewals (half of the hour's TTL): a new key for each, again one across the retries.
  server.down = true;
  fx.clock.advance(31 * MINUTE);
  await settle();
  await retryRounds(3);
  for (const e of entries) {
    const sent = keysSent.get(e.id)!;
    assert.ok(sent.length >= 3, `renewal retried (${sent.length} attempts)`);
    assert.equal(new Set(sent).size, 1, 'one key across the renewal\'s attempts');
    assert.notEqual(sent[0], firstKeys.get(e.id), 'the renewal does not send the key of the SVID it replaces');
  }
  server.down = false;
  issuer.kick();
  await settle();
  for (const e of entries) assert.equal(spkiOf(cache.svid(e.id)!.chain), keysSent.get(e.id)![0], 'the renewed SVID certifies the renewal\'s key');
  issuer.stop();
});

test('a kept key is not sent for another SPIFFE ID, nor for an entry removed and added again', async () => {
  const { cache, issuer, keysSent } = outageIssuer();
  const e = entry('outage-rename', ['unix:uid:42']);
  issuer.request(cache.apply({ upserts: [e] }).needSvid);
  await settle();
  await retryRounds(1);
  const [k1, k1again] = keysSent.get(e.id)!;
  assert.equal(k1again, k1, 'retried with its key');
  const renamed = entryFromMessage({ ...entryToMessage(e), spiffe_id: 'spiffe://example.org/outage-renamed', revision: e.revision + 1 });
  issuer.request(cache.apply({ upserts: [renamed] }).needSvid);
  await settle();
  await retryRounds(1);
  const [k2, k2again] = keysSent.get(e.id)!.slice(2);
  assert.notEqual(k2, k1, 'another SPIFFE ID, another key');
  assert.equal(k2again, k2, 'kept for the new SPIFFE ID\'s retries');
  issuer.forget(cache.apply({ removed: [e.id] }).removed.map((r) => r.id));
  issuer.request(cache.apply({ upserts: [renamed] }).needSvid);
  await settle();
  const k3 = keysSent.get(e.id)![4];
  assert.ok(k3 !== undefined && k3 !== k1 && k3 !== k2, 'the key of a removed entry is gone with it');
  issuer.stop();
});

test('a kept key is not sent for other DNS names or another TTL: each change gets a new key, and the SVID that comes carries the last', async () => {
  // The fixture's stand-in leaves DNS names out; this one signs what the cache's entry asks for now, as the server does.
  const { cache, issuer, server, keysSent } = outageIssuer({}, (c) => async (items) =>
    items.map((i) => {
      const e = c.entry(i.entryId)!;
      const signed = fx.ca.signX509Svid({ datacenter: 'east', publicKey: parseCsr(i.csr).publicKey, spiffeId: e.spiffeId, dnsNames: [...e.dnsNames], ttlMs: e.x509SvidTtlSeconds * 1000 });
      return { entryId: i.entryId, code: 0, message: '', chain: signed.chain };
    }),
  );
  const e1 = entry('outage-inputs', ['unix:uid:44'], { dns_names: ['a.example'], x509_svid_ttl: 3600 });
  const e2 = entryFromMessage({ ...entryToMessage(e1), dns_names: ['b.example'], revision: e1.revision + 1 });
  const e3 = entryFromMessage({ ...entryToMessage(e2), x509_svid_ttl: 600, revision: e1.revision + 2 });
  for (const e of [e1, e2, e3]) {
    issuer.request(cache.apply({ upserts: [e] }).needSvid);
    await settle();
    await retryRounds(1);
  }
  const [k1, k1again, k2, k2again, k3, k3again, ...more] = keysSent.get(e1.id)!;
  assert.equal(more.length, 0);
  assert.equal(k1again, k1, 'retried with its key');
  assert.notEqual(k2, k1, 'other DNS names, another key');
  assert.equal(k2again, k2, 'kept for the new DNS names\' retries');
  assert.notEqual(k3, k2, 'another TTL, another key');
  assert.equal(k3again, k3, 'kept for the new TTL\'s retries');
  server.down = false;
  issuer.kick();
  await settle();
  const svid = cache.svid(e1.id)!;
  const leaf = parseCertificate(svid.chain[0]!);
  assert.equal(spkiOf(svid.chain), k3, 'the SVID certifies the last key');
  assert.deepEqual(leaf.dnsNames, ['b.example'], 'and names the new DNS name');
  assert.equal(leaf.notAfter - fx.clock.now(), 600_000, 'for the new TTL');
  assert.equal(svid.inputs, certificateInputs(e3));
  issuer.stop();
});

test('an item the server refuses is retried with its key; one answered with a certificate that fails the checks gets a new key', async () => {
  const refused = entry('outage-refused-item', ['unix:uid:43']);
  const misissued = entry('outage-wrong-key', ['unix:uid:43']);
  const { cache, issuer, server, keysSent } = outageIssuer({}, (_cache, real) => async (items) =>
    (await real(items)).map((r) =>
      r.entryId === refused.id
        ? { entryId: r.entryId, code: 13, message: 'internal error', chain: [] }
        : r.entryId === misissued.id
          ? { ...r, chain: fx.issue(misissued).chain } // a certificate for another key
          : r,
    ),
  );
  server.down = false;
  issuer.request(cache.apply({ upserts: [refused, misissued] }).needSvid);
  await settle();
  await retryRounds(2);
  const refusedKeys = keysSent.get(refused.id)!;
  assert.ok(refusedKeys.length >= 3, `refused item retried (${refusedKeys.length} attempts)`);
  assert.equal(new Set(refusedKeys).size, 1, 'no certificate came back for it: its key is sent again');
  const misissuedKeys = keysSent.get(misissued.id)!;
  assert.ok(misissuedKeys.length >= 3, `misissued item retried (${misissuedKeys.length} attempts)`);
  assert.equal(new Set(misissuedKeys).size, misissuedKeys.length, 'a certificate came back for each: a new key every time');
  assert.equal(cache.svid(misissued.id), undefined, 'none served');
  issuer.stop();
});

test('an item whose CSR the server refuses as invalid is retried with a new key and CSR, not the bytes refused', async () => {
  const e = entry('outage-invalid-csr', ['unix:uid:46']);
  let refusals = 1;
  const { cache, issuer, server, keysSent } = outageIssuer({}, (_cache, real) => async (items) =>
    (await real(items)).map((r) =>
      r.entryId === e.id && refusals-- > 0 ? { entryId: r.entryId, code: 3, message: 'malformed CSR: CertificationRequest has extra fields', chain: [] } : r,
    ),
  );
  server.down = false;
  issuer.request(cache.apply({ upserts: [e] }).needSvid);
  await settle();
  await retryRounds(1);
  const [refused, retried, ...more] = keysSent.get(e.id)!;
  assert.equal(more.length, 0, 'signed at the second attempt');
  assert.notEqual(retried, refused, 'the retry sends a new key, not the CSR the server refused');
  assert.equal(spkiOf(cache.svid(e.id)!.chain), retried, 'and the SVID certifies it');
  issuer.stop();
});

test('after an outage the watched SVIDs go first, then the rest by expiry (none held first), not in the order their renewals fell due', async () => {
  const { cache, issuer, server, calls } = outageIssuer({ batchSize: 1, maxInflight: 1 });
  const t0 = fx.clock.now();
  const long = entry('catch-up-2h', ['unix:uid:44'], { x509_svid_ttl: 7200 });
  const watched = entry('catch-up-watched', ['unix:uid:45'], { x509_svid_ttl: 7200 });
  const short = entry('catch-up-20min', ['unix:uid:44'], { x509_svid_ttl: 1200 });
  const expiring = entry('catch-up-10min', ['unix:uid:44'], { x509_svid_ttl: 600 });
  cache.apply({ upserts: [long, watched, short, expiring] });
  const unsubscribe = cache.subscribe([{ type: 'unix', value: 'uid:45' }], () => undefined);
  // Held SVIDs whose renewals fall due in the order long (t0+60 min), watched (+61), expiring (+63), short (+65),
  // while they expire in the order expiring (+68), short (+75), long (+120), watched (+121).
  const holdAt = (at: number, e: typeof long, ttlMs: number): void => {
    fx.clock.advance(t0 + at * MINUTE - fx.clock.now());
    cache.putSvids([fx.issue(e, ttlMs)]);
  };
  holdAt(0, long, 120 * MINUTE);
  holdAt(1, watched, 120 * MINUTE);
  holdAt(55, short, 20 * MINUTE);
  holdAt(58, expiring, 10 * MINUTE);
  issuer.reconcile();
  await settle();
  assert.deepEqual(calls, [], 'nothing due yet');
  while (fx.clock.now() < t0 + 70 * MINUTE) {
    fx.clock.advance(MINUTE);
    await settle();
  }
  assert.deepEqual(new Set(calls.flat()), new Set([long.id, watched.id, short.id, expiring.id]), 'every renewal failed during the outage');
  assert.equal(cache.svid(expiring.id), undefined, 'the 10 min SVID expired meanwhile');
  calls.length = 0;
  server.down = false;
  // What the connection does when the server is back.
  issuer.reconcile();
  issuer.kick();
  await settle();
  assert.deepEqual(calls, [[watched.id], [expiring.id], [short.id], [long.id]]);
  unsubscribe();
  issuer.stop();
});
