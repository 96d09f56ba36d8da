import { test } from 'node:test';
import assert from 'node:assert/strict';
import { status, type ServiceError } from '@grpc/grpc-js';
import { silentLogger } from '../../../src/common/log.js';
import { bundleService } from '../../../src/server/api/bundle-service.js';
import { certificatesToPem } from '../../../src/common/x509/pem.js';
import { TestCa } from '../../support/fake-sds-cache.js';
import { openTestCa, tempDir } from '../../support/server-kit.js';

type Handler = (call: { request: unknown }, cb: (err: ServiceError | null) => void) => void;

/**
 * The handlers are called directly (no gRPC transport: stubbed call objects, and no federation poller to tell), both
 * in one tick, as grpc-js does when both requests' frames arrive in one read: each reads the stored bundle before
 * either writes.
 */
test('two SetFederatedBundle calls for one trust domain started in one tick (stubbed gRPC call objects, no poller): one is stored, the other is ABORTED saying to run it again, not refused over a sequence nobody gave', async (t) => {
  const tmp = tempDir();
  t.after(tmp.cleanup);
  const { ca, ds, clock, close } = await openTestCa(tmp.dir);
  t.after(close);
  const svc = bundleService(ds, ca, { anchorsReplaced: () => {} }, clock, silentLogger());
  const set = svc.SetFederatedBundle as unknown as Handler;
  const call = (request: unknown): Promise<ServiceError | null> => new Promise((resolve) => set({ request }, (err) => resolve(err)));
  const partners = [new TestCa('partner.org'), new TestCa('partner.org')];
  t.after(() => partners.forEach((p) => p.dispose()));
  const errors = await Promise.all(partners.map((p) => call({ trust_domain: 'partner.org', bundle: certificatesToPem([p.rootDer]) })));
  assert.deepEqual(errors.map((e) => e?.code ?? status.OK), [status.OK, status.ABORTED]);
  assert.match(errors[1]!.details, /^the bundle of partner\.org was changed by another writer .*: run the command again$/);
  const stored = await ds.getBundle('partner.org');
  assert.deepEqual(stored?.x509Authorities, [partners[0]!.rootDer]);
  assert.equal(stored?.sequence, 1);
});
