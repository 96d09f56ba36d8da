/**
 * What the CA serves after a sequence of operations must be what it serves after a restart on the same data dir:
 * memory is rebuilt from the CA journal then, so a difference means memory held something the journal does not.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { FakeClock } from '../../../src/common/clock.js';
import { generateKeyPair } from '../../../src/common/x509/keys.js';
import { parseCertificate } from '../../../src/common/x509/certificate.js';
import type { CaManager } from '../../../src/server/ca/ca-manager.js';
import type { RawServerConfig } from '../../../src/server/config.js';
import { opensslCa } from '../../support/openssl.js';
import { openTestCa, tempDir } from '../../support/server-kit.js';

const H = 3_600_000;
const D = 24 * H;
const DATACENTERS = ['east', 'west'];
const short = (der: Buffer): string => der.toString('hex').slice(-16);

/**
 * Everything the CA serves: the bundle with its sequence, `ca show`'s listing in its order, the taints agents re-sign
 * away from, the chain the per-call check rebuilds above every intermediate, and what each datacenter and the JWT key
 * sign with.
 */
function served(ca: CaManager): unknown {
  const { publicKey } = generateKeyPair('ec-p256');
  const attempt = (fn: () => unknown): unknown => {
    try {
      return fn();
    } catch (err) {
      return (err as Error).message;
    }
  };
  const bundle = ca.bundle();
  const authorities = ca.listAuthorities();
  return {
    x509: bundle.x509Authorities.map(short),
    jwt: bundle.jwtAuthorities.map((k) => k.kid),
    sequence: bundle.sequence,
    authorities: authorities.map((a) => `${a.id} ${a.state} ${a.notAfter} ${a.updatedAt}`),
    tainted: ca.taintedKeyIds(),
    chains: authorities
      .filter((a) => a.kind === 'intermediate')
      .map((a) => [a.id, ca.issuerChains(parseCertificate(a.certDer!).subjectKeyId!).map((c) => c.map(short))]),
    x509Signers: DATACENTERS.map((dc) =>
      attempt(() => {
        const s = ca.signX509Svid({ datacenter: dc, publicKey, spiffeId: 'spiffe://example.org/w', ttlMs: H });
        return [s.authorityId, s.chain.slice(1).map(short)];
      }),
    ),
    jwtSigner: attempt(() => {
      const { token } = ca.signJwtSvid({ spiffeId: 'spiffe://example.org/w', audience: ['a'], ttlMs: 60_000 });
      return JSON.parse(Buffer.from(token.split('.')[0]!, 'base64url').toString()).kid;
    }),
  };
}

const find = (ca: CaManager, kind: string, state: string, dc = ''): string =>
  ca.listAuthorities().find((a) => a.kind === kind && a.state === state && a.datacenter === dc)!.id;

interface Scenario {
  name: string;
  /** The server's settings; `renewedFrom`: those of a first start before it (an upstream CA renewed since). */
  raw?: RawServerConfig;
  renewedFrom?: RawServerConfig;
  /** How far behind real time the clock starts (OpenSSL judges certificates by real time). */
  startBehind?: number;
  steps(ca: CaManager, clock: FakeClock): Promise<unknown>;
}

/** Two mesh CAs issued by one corporate issuing CA, and a third under another corporate root. */
function corporatePki(dir: string) {
  const root = opensslCa(dir, 'Corporate Root');
  const issuing = opensslCa(dir, 'Issuing CA', { issuer: root });
  const mesh = (name: string): RawServerConfig => {
    const ca = opensslCa(dir, name, { issuer: issuing });
    const chain = path.join(dir, `${name}.chain.pem`);
    fs.writeFileSync(chain, fs.readFileSync(ca.cert, 'utf8') + fs.readFileSync(issuing.cert, 'utf8'));
    return { upstream_ca_cert: chain, upstream_ca_key: ca.key, upstream_bundle: root.cert };
  };
  const otherRoot = opensslCa(dir, 'Other Root');
  const other = opensslCa(dir, 'Mesh CA 3', { issuer: otherRoot });
  const selfSigned = (name: string): RawServerConfig => {
    const ca = opensslCa(dir, name);
    return { upstream_ca_cert: ca.cert, upstream_ca_key: ca.key };
  };
  return {
    mesh1: mesh('Mesh CA 1'),
    mesh2: mesh('Mesh CA 2'),
    underOtherRoot: { upstream_ca_cert: other.cert, upstream_ca_key: other.key, upstream_bundle: otherRoot.cert },
    selfSigned1: selfSigned('Mesh Root A'),
    selfSigned2: selfSigned('Mesh Root B'),
  };
}

test('a restart on the same data dir serves what the CA served before it, in self-signed and upstream mode', async (t) => {
  const { dir, cleanup } = tempDir('meshid-ca-restart-');
  t.after(cleanup);
  const pki = corporatePki(dir);
  const taintAndRevoke = async (ca: CaManager, id: string) => {
    await ca.taint(id);
    await ca.revoke(id);
  };
  const scenarios: Scenario[] = [
    { name: 'an intermediate tainted', steps: (ca) => ca.taint(find(ca, 'intermediate', 'active', 'east')) },
    { name: 'the root tainted', steps: (ca) => ca.taint(find(ca, 'root', 'active')) },
    { name: 'the root tainted and revoked', steps: (ca) => taintAndRevoke(ca, find(ca, 'root', 'active')) },
    { name: 'the JWT key tainted', steps: (ca) => ca.taint(find(ca, 'jwt', 'active')) },
    { name: 'the JWT key tainted and revoked', steps: (ca) => taintAndRevoke(ca, find(ca, 'jwt', 'active')) },
    { name: 'a root rotation requested', steps: (ca) => ca.rotateRoot() },
    { name: 'a root rotation requested, the prepared root tainted', steps: async (ca) => ca.taint((await ca.rotateRoot()).id) },
    { name: 'a root rotation requested, the active root tainted', steps: async (ca) => (await ca.rotateRoot(), ca.taint(find(ca, 'root', 'active'))) },
    {
      name: 'half an intermediate lifetime on, the prepared intermediate tainted',
      startBehind: 10 * D,
      steps: async (ca, clock) => {
        clock.advance(4 * D);
        await ca.recheck();
        await ca.taint(find(ca, 'intermediate', 'prepared', 'east'));
      },
    },
    {
      name: 'thirty days of rotations with a taint of each kind on the way',
      raw: { root_ttl: '20d', root_activation_delay: '1d' },
      startBehind: 31 * D,
      steps: async (ca, clock) => {
        for (let day = 0; day < 30; day++) {
          clock.advance(D);
          await ca.recheck();
          if (day === 3) await ca.taint(find(ca, 'intermediate', 'active', 'west'));
          if (day === 8) await ca.taint(find(ca, 'jwt', 'active'));
          if (day === 12) await ca.taint(find(ca, 'root', 'active'));
        }
      },
    },
    { name: 'upstream: a renewed CA published, not active yet', renewedFrom: pki.mesh1, raw: pki.mesh2, steps: async () => undefined },
    { name: 'upstream: a renewed CA, the first tainted', renewedFrom: pki.mesh1, raw: pki.mesh2, steps: (ca) => ca.taint(find(ca, 'root', 'active')) },
    { name: 'upstream: an intermediate tainted under a renewed CA', renewedFrom: pki.mesh1, raw: pki.mesh2, steps: (ca) => ca.taint(find(ca, 'intermediate', 'active', 'west')) },
    {
      // Its PKI root leaves the bundle with it; the per-call check had rebuilt the chain above the first CA's
      // intermediate (an agent on it called) while that CA was listed.
      name: 'upstream: a CA under another corporate root replaces the first, which is tainted and revoked',
      renewedFrom: pki.mesh1,
      raw: pki.underOtherRoot,
      steps: async (ca) => {
        const first = ca.listAuthorities().find((a) => a.kind === 'intermediate' && a.datacenter === 'east' && a.state === 'active')!;
        ca.issuerChains(parseCertificate(first.certDer!).subjectKeyId!);
        await taintAndRevoke(ca, find(ca, 'root', 'active'));
      },
    },
    {
      name: 'upstream without a bundle: a renewed self-signed CA, the first tainted and revoked',
      renewedFrom: pki.selfSigned1,
      raw: pki.selfSigned2,
      steps: (ca) => taintAndRevoke(ca, find(ca, 'root', 'active')),
    },
  ];
  for (const s of scenarios) {
    const data = path.join(dir, s.name.replace(/\W+/g, '-'));
    // After the openssl certificates: the clock must not precede them. Upstream scenarios run at real time.
    const clock = new FakeClock(Date.now() - (s.startBehind ?? (s.renewedFrom ? 0 : H)));
    if (s.renewedFrom !== undefined) await (await openTestCa(data, s.renewedFrom, clock)).close();
    const first = await openTestCa(data, s.raw ?? {}, clock);
    let before: unknown;
    try {
      await s.steps(first.ca, clock);
      before = served(first.ca);
    } finally {
      await first.close();
    }
    const second = await openTestCa(data, s.raw ?? {}, clock);
    try {
      assert.deepEqual(served(second.ca), before, s.name);
    } finally {
      await second.close();
    }
  }
});
