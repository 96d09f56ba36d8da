/**
 * What makes meshid-server not ready or not live (server-health.ts), and what its gRPC health answers on the admin
 * socket and the agent API (grpc-health-serving.ts), from sources the test sets: an intermediate per datacenter, the
 * CA journal's JWT keys, a datastore that reads or fails.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { silentLogger } from '../../../src/common/log.js';
import type { ParsedCertificate } from '../../../src/common/x509/certificate.js';
import type { CaRecord } from '../../../src/server/ca/ca-journal.js';
import type { Datastore } from '../../../src/server/datastore/datastore.js';
import { grpcHealthServing } from '../../../src/server/grpc-health-serving.js';
import { serverHealthProbe, StartingServerProbe, type ServerHealthSources } from '../../../src/server/server-health.js';

const NOW = 1_800_000_000_000;
const H = 3_600_000;

const intermediate = (notBefore: number, notAfter: number): ParsedCertificate => ({ notBefore, notAfter }) as ParsedCertificate;
const jwtKey = (overrides: Partial<CaRecord> = {}): CaRecord => ({ kind: 'jwt', state: 'active', notBefore: NOW - H, notAfter: NOW + H, ...overrides }) as CaRecord;

function sources(overrides: { intermediate?: ParsedCertificate | undefined; authorities?: CaRecord[]; datastoreFails?: boolean } = {}): ServerHealthSources {
  return {
    datastore: {
      currentRevision: async () => {
        if (overrides.datastoreFails === true) throw new Error('disk I/O error');
        return 1;
      },
    },
    ca: {
      activeIntermediate: () => ('intermediate' in overrides ? overrides.intermediate : intermediate(NOW - H, NOW + H)),
      listAuthorities: () => overrides.authorities ?? [jwtKey()],
    },
    datacenters: ['dc1'],
    agentApi: '127.0.0.1:8081',
    now: () => NOW,
  };
}

test('ready needs an intermediate and an active JWT key, each valid now: one not yet valid, or ending now, is not ready, and the reason names what is missing', async () => {
  const ok = await serverHealthProbe(sources()).ready();
  assert.equal(ok.ok, true, JSON.stringify(ok.details));
  assert.deepEqual(ok.details['intermediates_expire_at'], { dc1: new Date(NOW + H).toISOString() });
  const noIntermediate = /datacenter "dc1" has no intermediate CA valid now/;
  const noJwtKey = /no JWT signing key is active/;
  const cases: Array<[string, ServerHealthSources, RegExp]> = [
    ['no intermediate', sources({ intermediate: undefined }), noIntermediate],
    ['an intermediate not valid yet', sources({ intermediate: intermediate(NOW + 1, NOW + H) }), noIntermediate],
    ['an intermediate that ends now', sources({ intermediate: intermediate(NOW - H, NOW) }), noIntermediate],
    ['a JWT key only prepared', sources({ authorities: [jwtKey({ state: 'prepared' })] }), noJwtKey],
    ['an active JWT key not valid yet', sources({ authorities: [jwtKey({ notBefore: NOW + 1 })] }), noJwtKey],
    ['an active JWT key that ends now', sources({ authorities: [jwtKey({ notAfter: NOW })] }), noJwtKey],
    ['an active root but no JWT key', sources({ authorities: [jwtKey({ kind: 'root' })] }), noJwtKey],
  ];
  for (const [what, s, reason] of cases) {
    const verdict = await serverHealthProbe(s).ready();
    assert.equal(verdict.ok, false, what);
    assert.match(String(verdict.details['reason']), reason, what);
  }
});

test('a datastore that cannot be read makes the server neither live nor ready, saying why', async () => {
  const probe = serverHealthProbe(sources({ datastoreFails: true }));
  for (const verdict of [await probe.live(), await probe.ready()]) {
    assert.equal(verdict.ok, false);
    assert.match(String(verdict.details['reason']), /the datastore cannot be read: disk I\/O error/);
  }
  assert.equal((await serverHealthProbe(sources()).live()).ok, true);
});

test('gRPC health: the admin socket serves while the datastore reads, and again once it reads again; the agent API serves only once the server is ready', async () => {
  let fails = false;
  const ds = { currentRevision: async () => (fails ? Promise.reject(new Error('disk I/O error')) : 1) } as unknown as Datastore;
  const starting = new StartingServerProbe();
  const health = grpcHealthServing(ds, starting, silentLogger());
  assert.equal(await health.admin(), true);
  fails = true;
  assert.equal(await health.admin(), false);
  fails = false;
  assert.equal(await health.admin(), true);
  assert.equal(await health.agentApi(), false, 'starting: not serving yet');
  starting.serving(serverHealthProbe(sources({ authorities: [] })));
  assert.equal(await health.agentApi(), false, 'serving, but with no JWT key: not ready');
  starting.serving(serverHealthProbe(sources()));
  assert.equal(await health.agentApi(), true);
});
