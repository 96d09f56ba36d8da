/**
 * What the CA signs never outlives what signed it: an X.509-SVID past its intermediate's notAfter, or a JWT-SVID past
 * its key's, is refused (UNAVAILABLE, retried once the successor signs), to the millisecond, not truncated.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isMeshidError } from '../../../src/common/errors.js';
import { generateKeyPair } from '../../../src/common/x509/keys.js';
import { openTestCa, tempDir } from '../../support/server-kit.js';

test('an SVID or a JWT-SVID ending after its signer is refused; one ending with it is signed', async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const ca = await openTestCa(dir);
  t.after(() => ca.close());
  const now = ca.clock.now();
  const { publicKey } = generateKeyPair('ec-p256');
  const east = ca.ca.listAuthorities().find((a) => a.kind === 'intermediate' && a.datacenter === 'east' && a.state === 'active')!;
  const sign = (ttlMs: number) => ca.ca.signX509Svid({ datacenter: 'east', publicKey, spiffeId: 'spiffe://example.org/w', ttlMs });
  assert.equal(sign(east.notAfter - now).notAfter, east.notAfter);
  assert.throws(() => sign(east.notAfter - now + 1), (e: unknown) => isMeshidError(e, 'unavailable'));

  const jwt = ca.ca.listAuthorities().find((a) => a.kind === 'jwt' && a.state === 'active')!;
  // Token times are whole seconds: the last second the key covers, then the one after it.
  const lastSecond = Math.floor(jwt.notAfter / 1000) * 1000;
  const signJwt = (ttlMs: number) => ca.ca.signJwtSvid({ spiffeId: 'spiffe://example.org/w', audience: ['a'], ttlMs });
  assert.equal(signJwt(lastSecond - now).expiresAt, lastSecond);
  assert.throws(() => signJwt(lastSecond - now + 1000), (e: unknown) => isMeshidError(e, 'unavailable'));
});

test('a JWT-SVID asked for mid-second never lives longer than the TTL asked for: its whole-second exp is rounded down', async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const ca = await openTestCa(dir);
  t.after(() => ca.close());
  ca.clock.advance(500);
  const asked = ca.clock.now() + 300_000;
  const { expiresAt } = ca.ca.signJwtSvid({ spiffeId: 'spiffe://example.org/w', audience: ['a'], ttlMs: 300_000 });
  assert.equal(expiresAt, asked - 500);
});
