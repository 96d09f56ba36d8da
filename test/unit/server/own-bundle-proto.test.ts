import { test } from 'node:test';
import assert from 'node:assert/strict';
import { trustBundleToProto } from '../../../src/server/api/convert.js';
import { OwnBundleProto } from '../../../src/server/api/own-bundle-proto.js';
import { openTestCa, tempDir } from '../../support/server-kit.js';

test("a Sync stream's own bundle is built once per bundle version: the same message until the CA's bundle changes, then the new bundle's (a JWT key tainted, a root tainted)", async () => {
  const { dir, cleanup } = tempDir();
  const t = await openTestCa(dir);
  try {
    const own = new OwnBundleProto(t.ca);
    const first = own.get();
    assert.deepEqual(first, trustBundleToProto(t.ca.bundle()));
    assert.equal(own.get(), first, 'built once');

    // Only the JWT keys change: the X.509 authorities are the same certificates.
    const jwt = t.ca.listAuthorities().find((a) => a.kind === 'jwt' && a.state === 'active')!;
    await t.ca.taint(jwt.id);
    const afterJwt = own.get();
    assert.notEqual(afterJwt, first);
    assert.deepEqual(afterJwt, trustBundleToProto(t.ca.bundle()));
    assert.ok(!afterJwt.jwt_authorities!.some((k) => k.kid === jwt.keyId), 'the tainted key is out of what streams are sent');
    assert.equal(afterJwt.sequence, first.sequence! + 1);

    const root = t.ca.listAuthorities().find((a) => a.kind === 'root' && a.state === 'active')!;
    await t.ca.taint(root.id);
    const afterRoot = own.get();
    assert.deepEqual(afterRoot, trustBundleToProto(t.ca.bundle()));
    assert.notDeepEqual(afterRoot.x509_authorities, afterJwt.x509_authorities);
    assert.equal(own.get(), afterRoot);
  } finally {
    await t.close();
    cleanup();
  }
});
