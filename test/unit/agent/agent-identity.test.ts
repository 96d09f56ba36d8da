/**
 * The agent SVID: its renewal around a taint, and attestation and renewal on a data dir that cannot take it. The
 * server side is stubbed (Attest and Renew stand-ins signing with the test CA, whose answers the test holds back or
 * times): the races need the answer to arrive at one exact moment. The full disks are real (small tmpfs mounts,
 * root only; skipped otherwise).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { AgentIdentity } from '../../../src/agent/client/agent-identity.js';
import type { AttestResponseMessage } from '../../../src/agent/client/messages.js';
import type { NodeClient } from '../../../src/agent/client/node-client.js';
import { AgentStore } from '../../../src/agent/storage/agent-store.js';
import { decodeIdentity, encodeIdentity } from '../../../src/agent/storage/stored-state.js';
import { isMeshidError, resourceExhausted, unavailable } from '../../../src/common/errors.js';
import { silentLogger, type Logger } from '../../../src/common/log.js';
import { capturingLogger, LEVEL } from '../../support/log-lines.js';
import { parseCertificate } from '../../../src/common/x509/certificate.js';
import { parseCsr } from '../../../src/common/x509/csr.js';
import { exportPkcs8Der, generateKeyPair } from '../../../src/common/x509/keys.js';
import { trustBundleToProto } from '../../../src/server/api/convert.js';
import { tempDir } from '../../support/server-kit.js';
import { fillDisk, mountTmpfs } from '../../support/tmpfs.js';
import { openAgentFixture, type AgentFixture } from './agent-fixture.js';
import { teardown } from '../../support/teardown.js';

let fx: AgentFixture;
before(async () => (fx = await openAgentFixture()));
after(async () => fx.close());

const AGENT_ID = 'spiffe://example.org/meshid/agent/east/test';
const intermediateOf = (chain: readonly Buffer[]): string => parseCertificate(chain[1]!).subjectKeyId!;

/** An AgentIdentity over `client`, restored with an agent SVID of `ttlMs` the test CA signs now (`first`). */
function restoredIdentity(client: NodeClient, store: AgentStore, ttlMs = 3_600_000, log: Logger = silentLogger()): { identity: AgentIdentity; first: Buffer[] } {
  const identity = new AgentIdentity({
    client, store, clock: fx.clock, log, joinToken: undefined, insecureBootstrap: false, trustDomain: 'example.org',
    trustRoots: () => fx.bundle().x509Authorities, onRejected: () => undefined, random: () => 0.5,
  });
  const { privateKey, publicKey } = generateKeyPair('ec-p256');
  const first = fx.ca.signX509Svid({ datacenter: 'east', publicKey, spiffeId: AGENT_ID, ttlMs }).chain;
  identity.restore({ trustDomain: 'example.org', spiffeId: AGENT_ID, datacenter: 'east', chain: first, privateKey, joinTokenSha256: '' });
  return { identity, first };
}

/** A stubbed server whose only call is the agent SVID's renewal, answered by `renew`. */
const renewingClient = (renew: (csr: Buffer) => Promise<Buffer[]>): NodeClient => ({ setIdentity: () => undefined, renew }) as unknown as NodeClient;

/** An agent SVID chain the test CA signs now for `csr`: what the stubbed Renew answers. */
const signedChain = (csr: Buffer): Buffer[] => fx.ca.signX509Svid({ datacenter: 'east', publicKey: parseCsr(csr).publicKey, spiffeId: AGENT_ID, ttlMs: 3_600_000 }).chain;

/** Moves the clock `seconds` forward a second at a time, letting what each second sets off run. */
async function advanceSeconds(seconds: number): Promise<void> {
  for (let i = 0; i < seconds; i++) {
    fx.clock.advance(1000);
    await settle();
  }
}

/** Runs `body` with an agent store in a fresh temp dir, closed and removed afterwards. */
async function withStore(body: (store: AgentStore) => Promise<void>): Promise<void> {
  const t = tempDir('meshid-agent-identity-');
  const store = AgentStore.open(path.join(t.dir, 'data'), silentLogger());
  try {
    await body(store);
  } finally {
    store.close();
    t.cleanup();
  }
}

const settle = async (): Promise<void> => {
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
};

test('attesting with no join token is refused naming both ways of giving one, the file and the flag (and their config keys)', async () => {
  await withStore(async (store) => {
    const client = { setIdentity: () => undefined } as unknown as NodeClient;
    const identity = new AgentIdentity({
      client, store, clock: fx.clock, log: silentLogger(), joinToken: undefined, insecureBootstrap: false, trustDomain: 'example.org',
      trustRoots: () => fx.bundle().x509Authorities, onRejected: () => undefined, random: () => 0.5,
    });
    await assert.rejects(
      identity.attest(fx.bundle().x509Authorities),
      (err) =>
        isMeshidError(err, 'failed_precondition') &&
        err.message === 'the agent has no SVID in its data dir and no join token: start it with a new join token (meshid-server token generate), ' +
          'given as --join-token-file FILE or --join-token (join_token_file or join_token in the config)',
    );
  });
});

test('a renewal answered after a taint reached the agent (signed just before it) is renewed again, off the tainted authority (stubbed server)', async () => {
  await withStore(async (store) => {
    const renewals: Array<Buffer[]> = [];
    let holdNext: Promise<void> | undefined;
    const client = renewingClient(async (csr) => {
      const chain = signedChain(csr);
      await holdNext;
      renewals.push(chain);
      return chain;
    });
    const { identity, first } = restoredIdentity(client, store);
    const tainted = intermediateOf(first);

    // A renewal is out (signed by the soon-tainted intermediate) when the taint arrives; its answer comes after.
    let release!: () => void;
    holdNext = new Promise<void>((resolve) => (release = resolve));
    const renewal = identity.renew();
    await settle();
    const taintedId = fx.ca.listAuthorities().find((a) => a.kind === 'intermediate' && a.datacenter === 'east' && a.state === 'active')!.id;
    await fx.ca.taint(taintedId);
    identity.renewIfTainted(new Set([tainted]));
    holdNext = undefined;
    release();
    await renewal;
    assert.equal(intermediateOf(identity.current()!.chain), tainted, 'the answer is used meanwhile: it is valid');

    fx.clock.advance(2_000);
    await settle();
    assert.equal(renewals.length, 2, 'renewed again');
    assert.notEqual(intermediateOf(identity.current()!.chain), tainted);
    identity.stop();
  });
});

test('Sync updates that name the taint again while its renewal is out warn once and renew once (stubbed server)', async () => {
  await withStore(async (store) => {
    let calls = 0;
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    const client = renewingClient(async (csr) => {
      calls++;
      await held;
      return signedChain(csr);
    });
    const captured = capturingLogger('agent');
    const { identity, first } = restoredIdentity(client, store, 3_600_000, captured.log);
    const tainted = new Set([intermediateOf(first)]);
    // The server's Sync stream sends the taint, then (before the renewal is answered) another update still naming it.
    identity.renewIfTainted(tainted);
    await settle();
    identity.renewIfTainted(tainted);
    identity.renewIfTainted(tainted);
    await settle();
    const warned = captured.records().filter((r) => r.level >= LEVEL.warn).map((r) => r.msg);
    assert.deepEqual(warned, ['the agent SVID chains to a tainted authority; renewing it now'], 'one taint, one warning');
    assert.equal(calls, 1, 'one renewal');
    release();
    await settle();
    identity.stop();
  });
});

test('renewals that keep coming back from a tainted authority back off instead of renewing every second (stubbed server)', async () => {
  await withStore(async (store) => {
    let renewals = 0;
    // A server that goes on signing with the tainted intermediate (it should not; the agent must not hammer it).
    const client = renewingClient(async (csr) => {
      renewals++;
      return signedChain(csr);
    });
    const { identity, first } = restoredIdentity(client, store);
    identity.renewIfTainted(new Set([intermediateOf(first)]));
    await settle();
    await advanceSeconds(15);
    identity.stop();
    // 1 s, 2 s, 4 s, 8 s apart: five renewals in 15 s, not sixteen.
    assert.ok(renewals <= 5, `${renewals} renewals in 15 s`);
    assert.ok(renewals >= 3, 'it does renew again');
  });
});

test('renewals that keep coming back from a tainted authority never wait past the renewal time of the SVID just renewed, so a short one does not lapse (stubbed server)', async () => {
  await withStore(async (store) => {
    const renewedAt: number[] = [];
    // A server that goes on signing 20 s agent SVIDs with the tainted intermediate (say its rotation cannot replace it).
    const client = renewingClient(async (csr) => {
      renewedAt.push(fx.clock.now());
      return fx.ca.signX509Svid({ datacenter: 'east', publicKey: parseCsr(csr).publicKey, spiffeId: AGENT_ID, ttlMs: 20_000 }).chain;
    });
    const { identity, first } = restoredIdentity(client, store);
    identity.renewIfTainted(new Set([intermediateOf(first)]));
    await settle();
    for (let i = 0; i < 90; i++) {
      await advanceSeconds(1);
      assert.ok(!identity.expired(fx.clock.now()), `the agent SVID lapsed ${fx.clock.now() - renewedAt[0]!} ms after the first renewal`);
    }
    identity.stop();
    // Half of the 20 s each is held for: the backoff (1 s, 2 s, … 60 s) stops growing past that.
    for (let i = 1; i < renewedAt.length; i++) assert.ok(renewedAt[i]! - renewedAt[i - 1]! <= 10_000, `renewal ${i} came ${renewedAt[i]! - renewedAt[i - 1]!} ms after the one before`);
  });
});

test('a renewal the server refuses over a budget is retried no sooner than the retry time it names (stubbed server)', async () => {
  await withStore(async (store) => {
    let renewals = 0;
    const client = renewingClient(async (csr) => {
      renewals++;
      if (renewals === 1) throw resourceExhausted(`agent ${AGENT_ID} renews its SVID too often; retry in 10 s`);
      return signedChain(csr);
    });
    const { identity, first } = restoredIdentity(client, store);
    await identity.renew();
    await advanceSeconds(9);
    assert.equal(renewals, 1, 'not retried within the 10 s the server named (the backoff alone would have retried after ~1 s)');
    await advanceSeconds(3);
    identity.stop();
    assert.equal(renewals, 2, 'retried once the 10 s are over');
    assert.notDeepEqual(identity.current()!.chain, first, 'and renewed');
  });
});

test('an agent SVID of a TTL shorter than the server\'s 10 s backdating is renewed at half the life it is held for, not again the moment it arrives (stubbed server)', async () => {
  await withStore(async (store) => {
    let renewals = 0;
    const client = renewingClient(async (csr) => {
      renewals++;
      return fx.ca.signX509Svid({ datacenter: 'east', publicKey: parseCsr(csr).publicKey, spiffeId: AGENT_ID, ttlMs: 5_000 }).chain;
    });
    const { identity } = restoredIdentity(client, store);
    await identity.renew();
    const leaf = parseCertificate(identity.current()!.chain[0]!);
    assert.equal(leaf.notAfter - leaf.notBefore, 15_000, 'the server backdated the 5 s SVID by 10 s');
    // Past the half of notBefore..notAfter already: renewing by that, it would be renewed again on arrival.
    fx.clock.advance(0);
    await settle();
    fx.clock.advance(2_499);
    await settle();
    assert.equal(renewals, 1, 'not renewed before half of the 5 s it is held for');
    fx.clock.advance(1);
    await settle();
    identity.stop();
    assert.equal(renewals, 2, 'renewed 2.5 s after it was asked for');
  });
});

/**
 * A restored 5 min agent SVID whose renewals keep failing with `fail` from its renewal time until `recoverLeftMs`
 * before it expires. Steps the clock a second at a time, as a real clock fires each retry; returns the failed tries'
 * clock times, the SVID's notAfter, and whether it was replaced before it expired.
 */
async function failingAgentRenewal(fail: () => never, recoverLeftMs: number): Promise<{ attempts: number[]; notAfter: number; renewed: boolean }> {
  let result: { attempts: number[]; notAfter: number; renewed: boolean } | undefined;
  await withStore(async (store) => {
    let failing = true;
    const attempts: number[] = [];
    const client = renewingClient(async (csr) => {
      if (!failing) return signedChain(csr);
      attempts.push(fx.clock.now());
      return fail();
    });
    const { identity, first } = restoredIdentity(client, store, 5 * 60_000);
    const notAfter = parseCertificate(first[0]!).notAfter;
    while (fx.clock.now() < notAfter - 1000 && identity.current()!.chain === first) {
      if (fx.clock.now() >= notAfter - recoverLeftMs) failing = false;
      fx.clock.advance(1000);
      await settle();
    }
    result = { attempts, notAfter, renewed: identity.current()!.chain !== first };
    identity.stop();
  });
  return result!;
}

test('a short agent SVID whose renewal keeps failing is retried within a quarter of the time it has left and renewed before it expires once the server is back (stubbed server)', async () => {
  const down = (): never => {
    throw unavailable('connect ECONNREFUSED (stubbed: the server is down)');
  };
  // Back with 15 s left: the doubling alone (0.75, 1.5, … 45 s with this jitter) has its next try after expiry.
  const { attempts, notAfter, renewed } = await failingAgentRenewal(down, 15_000);
  assert.ok(attempts.length > 0 && attempts[0]! < notAfter - 2 * 60_000, 'the renewal failed from its renewal time');
  for (let i = 1; i < attempts.length; i++) {
    const left = notAfter - attempts[i - 1]!;
    // Within a quarter of what was left at the try before, or the 5 s floor (the clock steps a second at a time).
    assert.ok(attempts[i]! - attempts[i - 1]! <= Math.max(5000, left / 4) + 1000, `try ${i} came ${attempts[i]! - attempts[i - 1]!} ms after the one before, with ${left} ms left`);
  }
  assert.ok(renewed, 'renewed before the agent SVID expired, not after');
});

test('near its expiry a failing agent SVID renewal is retried no closer than 5 s apart, so a fleet whose agent SVIDs run out together does not hammer a failing server (stubbed server)', async () => {
  const down = (): never => {
    throw unavailable('connect ECONNREFUSED (stubbed: the server is down)');
  };
  const { attempts, notAfter } = await failingAgentRenewal(down, 0);
  assert.ok(attempts.some((t) => notAfter - t < 4000), 'tried in the last 4 s, where a bound of 1 s would have them a second apart');
  for (let i = 1; i < attempts.length; i++) {
    const left = notAfter - attempts[i - 1]!;
    // The floor jittered over its upper half: 2.5-5 s (the clock steps a second at a time).
    if (left < 20_000) assert.ok(attempts[i]! - attempts[i - 1]! >= 2000, `try ${i} came ${attempts[i]! - attempts[i - 1]!} ms after the one before, ${left} ms before expiry`);
  }
});

test('a short agent SVID\'s renewal retries still wait out each budget refusal, however little time it has left (stubbed server)', async () => {
  const refuse = (): never => {
    throw resourceExhausted(`agent ${AGENT_ID} renews its SVID too often; retry in 8 s`);
  };
  // Refused until 12 s before expiry: for its last 32 s the bound (a quarter of what is left, at least 5 s) is under
  // the server's 8 s.
  const { attempts, notAfter, renewed } = await failingAgentRenewal(refuse, 12_000);
  assert.ok(attempts.length > 2);
  for (let i = 1; i < attempts.length; i++) {
    assert.ok(attempts[i]! - attempts[i - 1]! >= 8000, `try ${i} came ${attempts[i]! - attempts[i - 1]!} ms after a refusal that asked for 8 s`);
  }
  assert.ok(attempts.some((t) => notAfter - t < 32_000), 'refused again where the bound is under the server\'s wait');
  assert.ok(renewed, 'renewed before the agent SVID expired, once the server takes the renewal');
});

// --- A data dir that cannot take the agent identity ---

const TOKEN = 'tok-3c1f9a0b7e5d42c8a6f1e2d3c4b5a697';

/** The log as written, through the production logger (its redaction included). */
/** Attest and Renew stand-ins signing with the test CA; `beforeAnswer` runs once the server "has" consumed the token. */
function stubServer(beforeAnswer: () => void = () => undefined): { client: NodeClient; attests: number; renewals: number; identities: number } {
  const stub = {
    attests: 0,
    renewals: 0,
    identities: 0,
    client: undefined as unknown as NodeClient,
  };
  stub.client = {
    setIdentity: () => void stub.identities++,
    async attest(_token: string, csr: Buffer): Promise<AttestResponseMessage> {
      stub.attests++;
      const chain = signedChain(csr);
      beforeAnswer();
      return { spiffe_id: AGENT_ID, svid_chain: chain, bundle: trustBundleToProto(fx.bundle()), datacenter: 'east' } as AttestResponseMessage;
    },
    async renew(csr: Buffer): Promise<Buffer[]> {
      stub.renewals++;
      return signedChain(csr);
    },
  } as unknown as NodeClient;
  return stub;
}

function attestingIdentity(client: NodeClient, store: AgentStore, log = silentLogger()): AgentIdentity {
  return new AgentIdentity({
    client, store, clock: fx.clock, log, joinToken: TOKEN, insecureBootstrap: false, trustDomain: 'example.org',
    trustRoots: () => fx.bundle().x509Authorities, onRejected: () => undefined, random: () => 0.5,
  });
}

const identityFile = (dir: string): string => path.join(dir, 'agent-svid.json');

test('a data dir with no room for the agent identity: attestation is refused before Attest, naming the dir, the token unspent (stubbed server)', async (t) => {
  const dir = mountTmpfs(t, '256k');
  if (dir === undefined) return;
  const store = AgentStore.open(dir, silentLogger());
  teardown(t).after(() => store.close());
  const server = stubServer();
  fillDisk(dir);
  const before = fs.readdirSync(dir).sort();
  await assert.rejects(attestingIdentity(server.client, store).attest(fx.bundle().x509Authorities), (err: unknown) => {
    assert.ok(isMeshidError(err, 'failed_precondition'), String(err));
    assert.equal(err.message, `the data dir ${dir} cannot hold the agent identity: the disk is full. The join token was not used: make room there (or make it writable), or use another --data-dir, and start the agent again`);
    return true;
  });
  assert.equal(server.attests, 0, 'the token never reached the server');
  assert.deepEqual(fs.readdirSync(dir).sort(), before, 'no placeholder left behind');
});

test('the data dir fills up while Attest is out: the identity is used from memory and saved once there is room, retried on the clock (stubbed server)', async (t) => {
  const dir = mountTmpfs(t, '256k');
  if (dir === undefined) return;
  const store = AgentStore.open(dir, silentLogger());
  teardown(t).after(() => store.close());
  let filler = '';
  const server = stubServer(() => (filler = fillDisk(dir)));
  const { log, text } = capturingLogger('test');
  const identity = attestingIdentity(server.client, store, log);
  teardown(t).after(() => identity.stop());

  const bundle = await identity.attest(fx.bundle().x509Authorities);
  assert.equal(bundle.trustDomain, 'example.org');
  const attested = identity.current();
  assert.equal(attested?.spiffeId, AGENT_ID, 'the identity is kept');
  assert.equal(server.identities, 1, 'and handed to the client: the agent serves with it');
  assert.equal(fs.existsSync(identityFile(dir)), false);
  const failures = (): string[] => text().split('\n').filter((l) => l.includes(`cannot save the agent identity to ${dir}: the disk is full; will retry`));
  assert.equal(failures().length, 1, text());
  assert.match(failures()[0]!, /"level":50.*The join token is spent: should the agent stop before its identity is saved, it needs a new one/);

  // Still full at the first retry (1 s × jitter 0.5 → 750 ms): tried again, later.
  fx.clock.advance(750);
  assert.equal(failures().length, 2);
  fs.rmSync(filler);
  fx.clock.advance(1_500);
  assert.equal(failures().length, 2);
  const saved = decodeIdentity(fs.readFileSync(identityFile(dir), 'utf8'));
  assert.equal(saved.spiffeId, AGENT_ID);
  assert.deepEqual(saved.chain, attested!.chain, 'the identity in use is the one saved');
  assert.match(text(), /the agent identity is saved/);
  fx.clock.advance(120_000);
  assert.equal(failures().length, 2, 'no more retries once saved');

  // Neither the token nor the key reaches a log line.
  assert.doesNotMatch(text(), new RegExp(TOKEN));
  assert.ok(!text().includes(exportPkcs8Der(attested!.privateKey).toString('base64')));
  assert.ok(!text().includes(encodeIdentity(attested!).slice(0, 40)));
});

test('stopped with the identity still unsaved: one last try, else an error saying the next start needs a new join token (stubbed server)', async (t) => {
  const dir = mountTmpfs(t, '256k');
  if (dir === undefined) return;
  const store = AgentStore.open(dir, silentLogger());
  teardown(t).after(() => store.close());
  const server = stubServer(() => fillDisk(dir));
  const { log, text } = capturingLogger('test');
  const identity = attestingIdentity(server.client, store, log);
  await identity.attest(fx.bundle().x509Authorities);
  identity.stop();
  assert.match(text(), new RegExp(`"level":50.*cannot save the agent identity to ${dir}: the disk is full\\. It was never saved: the agent's next start needs a new join token \\(meshid-server token generate\\), and ${AGENT_ID} can be evicted`));
  fx.clock.advance(600_000);
  assert.equal(fs.existsSync(identityFile(dir)), false);
});

test('renewals on a full data dir: a renewed SVID is used only once saved, unless the one in use was never saved either (stubbed server)', async (t) => {
  const dir = mountTmpfs(t, '256k');
  if (dir === undefined) return;
  const store = AgentStore.open(dir, silentLogger());
  teardown(t).after(() => store.close());

  // Saved identity, then the disk fills: the renewal is not used (the saved one still works), and is retried.
  const saved = stubServer();
  const first = attestingIdentity(saved.client, store);
  await first.attest(fx.bundle().x509Authorities);
  const onDisk = fs.readFileSync(identityFile(dir), 'utf8');
  const filler = fillDisk(dir);
  await first.renew();
  assert.equal(saved.renewals, 1);
  assert.deepEqual(first.current()!.chain, decodeIdentity(onDisk).chain, 'still the saved SVID');
  first.stop();
  fs.rmSync(filler);

  // Attested onto a disk that filled meanwhile: nothing saved to fall back to, so the renewal is used at once.
  fs.rmSync(identityFile(dir));
  let fill = '';
  const unsaved = stubServer(() => (fill = fillDisk(dir)));
  const second = attestingIdentity(unsaved.client, store);
  teardown(t).after(() => second.stop());
  await second.attest(fx.bundle().x509Authorities);
  const attestedChain = second.current()!.chain;
  await second.renew();
  assert.equal(unsaved.renewals, 1);
  assert.notDeepEqual(second.current()!.chain, attestedChain, 'the renewed SVID is in use');
  assert.equal(unsaved.identities, 2);
  fs.rmSync(fill);
  fx.clock.advance(2_000);
  assert.deepEqual(decodeIdentity(fs.readFileSync(identityFile(dir), 'utf8')).chain, second.current()!.chain, 'and it is the one saved');
});

test('a renewal answered after stop() is dropped: nothing is saved, used or scheduled (stubbed Renew)', async () => {
  await withStore(async (store) => {
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    let renewals = 0;
    const client = renewingClient(async (csr) => {
      renewals++;
      await held;
      return signedChain(csr);
    });
    const { identity, first } = restoredIdentity(client, store);
    const renewal = identity.renew();
    await settle();
    identity.stop();
    release();
    await renewal;
    assert.deepEqual(identity.current()!.chain, first, 'the SVID in use is still the one before the renewal');
    assert.equal(store.loadIdentity(), undefined, 'nothing written to the data dir after stop');
    fx.clock.advance(3_600_000);
    await settle();
    assert.equal(renewals, 1, 'no renewal scheduled after stop');
  });
});

/**
 * An identity restored as AGENT_ID (1 h SVID) whose stubbed server renews with `renew` and answers an Attest (the
 * unused token) with `newId`: for the renewals that cross a re-attestation.
 */
function identityAbleToReattest(store: AgentStore, newId: string, renew: (csr: Buffer) => Promise<Buffer[]>): AgentIdentity {
  const client = {
    setIdentity: () => undefined,
    renew,
    async attest(_token: string, csr: Buffer): Promise<AttestResponseMessage> {
      const chain = fx.ca.signX509Svid({ datacenter: 'east', publicKey: parseCsr(csr).publicKey, spiffeId: newId, ttlMs: 3_600_000 }).chain;
      return { spiffe_id: newId, svid_chain: chain, bundle: trustBundleToProto(fx.bundle()), datacenter: 'east' } as AttestResponseMessage;
    },
  } as unknown as NodeClient;
  const identity = attestingIdentity(client, store);
  const { privateKey, publicKey } = generateKeyPair('ec-p256');
  const old = fx.ca.signX509Svid({ datacenter: 'east', publicKey, spiffeId: AGENT_ID, ttlMs: 3_600_000 }).chain;
  identity.restore({ trustDomain: 'example.org', spiffeId: AGENT_ID, datacenter: 'east', chain: old, privateKey, joinTokenSha256: '' });
  return identity;
}

test('a renewal of the old agent SVID answered after the agent attested again is dropped: the new identity stays (stubbed server)', async () => {
  await withStore(async (store) => {
    const NEW_ID = 'spiffe://example.org/meshid/agent/east/after-reattest';
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    const identity = identityAbleToReattest(store, NEW_ID, async (csr) => {
      await held;
      return signedChain(csr);
    });
    const renewal = identity.renew();
    await settle();
    // Evicted meanwhile: the server asked for a new attestation, which the unused token makes.
    await identity.attest(fx.bundle().x509Authorities);
    assert.equal(identity.current()!.spiffeId, NEW_ID);
    release();
    await renewal;
    assert.equal(identity.current()!.spiffeId, NEW_ID, 'the identity in use is still the one attested');
    assert.equal(parseCertificate(identity.current()!.chain[0]!).uriSans[0], NEW_ID);
    assert.equal(store.loadIdentity()!.spiffeId, NEW_ID, 'and so is the one saved');
  });
});

test('a renewal of the old agent SVID that fails after the agent attested again leaves the new identity its own renewal time (stubbed server)', async () => {
  await withStore(async (store) => {
    const NEW_ID = 'spiffe://example.org/meshid/agent/east/after-reattest-failed-renewal';
    let refuse!: () => void;
    const held = new Promise<void>((resolve) => (refuse = resolve));
    let renewals = 0;
    const identity = identityAbleToReattest(store, NEW_ID, async () => {
      renewals++;
      await held;
      // What NodeClient makes of a refusal of the identity the agent gave up (or of a connection lost meanwhile).
      throw unavailable('meshid-server refused Renew, sent as an agent this one no longer is (it attested again); a call made now goes as the agent it is');
    });
    const renewal = identity.renew();
    await settle();
    await identity.attest(fx.bundle().x509Authorities);
    assert.equal(identity.current()!.spiffeId, NEW_ID);
    refuse();
    await renewal;
    assert.equal(renewals, 1);
    // The new SVID (1 h) is renewed at half-life; a retry of the old one's renewal would renew it within seconds.
    await advanceSeconds(120);
    assert.equal(renewals, 1, 'the new agent SVID, a minute old, is not renewed');
    identity.stop();
  });
});
