/**
 * The agent SVID's renewal around a taint. The server side is stubbed (a Renew stand-in signing with the test CA,
 * whose answer the test holds back): the race needs the answer to arrive at one exact moment.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { AgentIdentity } from '../../../src/agent/client/agent-identity.js';
import type { NodeClient } from '../../../src/agent/client/node-client.js';
import { AgentStore } from '../../../src/agent/storage/agent-store.js';
import { silentLogger } from '../../../src/common/log.js';
import { parseCertificate } from '../../../src/common/x509/certificate.js';
import { parseCsr } from '../../../src/common/x509/csr.js';
import { generateKeyPair } from '../../../src/common/x509/keys.js';
import { tempDir } from '../../support/server-kit.js';
import { openAgentFixture, type AgentFixture } from './agent-fixture.js';

let fx: AgentFixture;
before(async () => (fx = await openAgentFixture()));
after(async () => fx.close());

const AGENT_ID = 'spiffe://example.org/meshid/agent/east/test';
const intermediateOf = (chain: readonly Buffer[]): string => parseCertificate(chain[1]!).subjectKeyId!;

/** An AgentIdentity over `client`, restored with an agent SVID the test CA signs now (`first`). */
function restoredIdentity(client: NodeClient, store: AgentStore): { identity: AgentIdentity; first: Buffer[] } {
  const identity = new AgentIdentity({
    client, store, clock: fx.clock, log: silentLogger(), joinToken: undefined, insecureBootstrap: false, trustDomain: 'example.org',
    trustRoots: () => fx.bundle().x509Authorities, onRejected: () => undefined, random: () => 0.5,
  });
  const { privateKey, publicKey } = generateKeyPair('ec-p256');
  const first = fx.ca.signX509Svid({ datacenter: 'east', publicKey, spiffeId: AGENT_ID, ttlMs: 3_600_000 }).chain;
  identity.restore({ trustDomain: 'example.org', spiffeId: AGENT_ID, datacenter: 'east', chain: first, privateKey, joinTokenSha256: '' });
  return { identity, first };
}

const settle = async (): Promise<void> => {
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
};

test('a renewal answered after a taint reached the agent (signed just before it) is renewed again, off the tainted authority', async () => {
  const t = tempDir('meshid-agent-identity-');
  const store = AgentStore.open(path.join(t.dir, 'data'), silentLogger());
  try {
    const sign = (csr: Buffer): Buffer[] => fx.ca.signX509Svid({ datacenter: 'east', publicKey: parseCsr(csr).publicKey, spiffeId: AGENT_ID, ttlMs: 3_600_000 }).chain;
    const renewals: Array<Buffer[]> = [];
    let holdNext: Promise<void> | undefined;
    const client = {
      setIdentity: () => undefined,
      async renew(csr: Buffer): Promise<Buffer[]> {
        const chain = sign(csr);
        await holdNext;
        renewals.push(chain);
        return chain;
      },
    } as unknown as NodeClient;
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
  } finally {
    store.close();
    t.cleanup();
  }
});

test('renewals that keep coming back from a tainted authority back off instead of renewing every second', async () => {
  const t = tempDir('meshid-agent-identity-');
  const store = AgentStore.open(path.join(t.dir, 'data'), silentLogger());
  try {
    let renewals = 0;
    // A server that goes on signing with the tainted intermediate (it should not; the agent must not hammer it).
    const client = {
      setIdentity: () => undefined,
      async renew(csr: Buffer): Promise<Buffer[]> {
        renewals++;
        return fx.ca.signX509Svid({ datacenter: 'east', publicKey: parseCsr(csr).publicKey, spiffeId: AGENT_ID, ttlMs: 3_600_000 }).chain;
      },
    } as unknown as NodeClient;
    const { identity, first } = restoredIdentity(client, store);
    identity.renewIfTainted(new Set([intermediateOf(first)]));
    await settle();
    for (let i = 0; i < 15; i++) {
      fx.clock.advance(1000);
      await settle();
    }
    identity.stop();
    // 1 s, 2 s, 4 s, 8 s apart: five renewals in 15 s, not sixteen.
    assert.ok(renewals <= 5, `${renewals} renewals in 15 s`);
    assert.ok(renewals >= 3, 'it does renew again');
  } finally {
    store.close();
    t.cleanup();
  }
});
