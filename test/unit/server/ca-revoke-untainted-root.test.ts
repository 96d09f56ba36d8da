/**
 * `ca revoke` takes only tainted roots: a prepared root (rotate-root) or one retired by a rotation is refused, naming
 * its state, and stays published. (ca-manager.test.ts covers an active root, an intermediate and a JWT key.)
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeClock } from '../../../src/common/clock.js';
import { MeshidError } from '../../../src/common/errors.js';
import { openTestCa, tempDir } from '../../support/server-kit.js';

const H = 3_600_000;

test('revoke of a prepared root or an old one (not tainted) is refused naming its state, and it stays in the bundle', async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const ca = await openTestCa(dir, { root_activation_delay: '1h' }, new FakeClock(Date.now() - H));
  t.after(() => ca.close());
  const refusedAs = (id: string, state: string) => (e: unknown) =>
    e instanceof MeshidError && e.code === 'failed_precondition' && e.message.startsWith(`authority ${id} is ${state}: only a tainted authority can be revoked`);

  const first = ca.ca.listAuthorities().find((a) => a.kind === 'root' && a.state === 'active')!;
  const prepared = await ca.ca.rotateRoot();
  assert.equal(prepared.state, 'prepared');
  await assert.rejects(ca.ca.revoke(prepared.id), refusedAs(prepared.id, 'prepared'));
  assert.ok(ca.ca.bundle().x509Authorities.some((d) => d.equals(prepared.certDer!)), 'the prepared root is still published');

  ca.clock.advance(2 * H);
  await ca.ca.rotateNow();
  assert.equal(ca.ca.listAuthorities().find((a) => a.id === first.id)?.state, 'old', 'retired by the activation');
  await assert.rejects(ca.ca.revoke(first.id), refusedAs(first.id, 'old'));
  assert.ok(ca.ca.bundle().x509Authorities.some((d) => d.equals(first.certDer!)), 'the old root, still under live intermediates, is still published');
});
