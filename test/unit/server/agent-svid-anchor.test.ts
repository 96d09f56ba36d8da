import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPair } from '../../../src/common/x509/keys.js';
import { parseCertificate } from '../../../src/common/x509/certificate.js';
import { AgentSvidAnchor } from '../../../src/server/api/agent-svid-anchor.js';
import { openTestCa, tempDir } from '../../support/server-kit.js';

const H = 3_600_000;

test('an agent SVID anchors while its root is in the bundle, not once the root is revoked; expiry is not its question', async () => {
  const { dir, cleanup } = tempDir();
  const t = await openTestCa(dir);
  try {
    const { publicKey } = generateKeyPair('ec-p256');
    const signed = t.ca.signX509Svid({ datacenter: 'east', publicKey, spiffeId: 'spiffe://example.org/meshid/agent/east/a', ttlMs: H });
    const leaf = parseCertificate(signed.chain[0]!);
    assert.equal(new AgentSvidAnchor(t.ca).chainsToBundle(leaf, t.clock.now()), true);
    // Seen for the first time after it expired (the memo cleared): still anchored; authenticateAgent refuses expiry.
    assert.equal(new AgentSvidAnchor(t.ca).chainsToBundle(leaf, leaf.notAfter + H), true);
    // Seen by a clock stepped back to before it was signed: still the server's, not another CA's (which would call for
    // a new join token).
    assert.equal(new AgentSvidAnchor(t.ca).signedByServer(leaf, leaf.notBefore - H), true);

    // A leaf of the same names and key ID that no intermediate of this server signed does not anchor.
    const otherDir = tempDir();
    const other = await openTestCa(otherDir.dir);
    try {
      const foreign = parseCertificate(other.ca.signX509Svid({ datacenter: 'east', publicKey, spiffeId: 'spiffe://example.org/meshid/agent/east/a', ttlMs: H }).chain[0]!);
      assert.equal(new AgentSvidAnchor(t.ca).chainsToBundle(foreign, t.clock.now()), false);
      assert.equal(new AgentSvidAnchor(t.ca).signedByServer(foreign, t.clock.now()), false);
    } finally {
      await other.close();
      otherDir.cleanup();
    }

    const anchor = new AgentSvidAnchor(t.ca);
    assert.equal(anchor.chainsToBundle(leaf, t.clock.now()), true);
    const root = t.ca.listAuthorities().find((a) => a.kind === 'root' && a.state === 'active')!;
    await t.ca.taint(root.id);
    assert.equal(anchor.chainsToBundle(leaf, t.clock.now()), true, 'a tainted root is still in the bundle');
    await t.ca.revoke(root.id);
    assert.equal(anchor.chainsToBundle(leaf, t.clock.now()), false, 'the revoked root left the bundle');
  } finally {
    await t.close();
    cleanup();
  }
});
