/**
 * `ca revoke` against a real meshid-server (in process, on a fake clock) whose bundle endpoint partners authenticate by
 * its SVID (https_spiffe): the revoke moves that SVID onto the new root, so it waits until partners polling at the
 * refresh hint have fetched the new root, and --force goes on before. The endpoint is checked over real TLS.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { FakeClock } from '../../src/common/clock.js';
import { isMeshidError } from '../../src/common/errors.js';
import { silentLogger } from '../../src/common/log.js';
import { compileServerConfig } from '../../src/server/config.js';
import { MeshidServer } from '../../src/server/server.js';
import { AdminClient } from '../../src/server/cli/admin-client.js';
import { teardown } from '../support/teardown.js';

const HINT_MS = 300_000;

/** The top of the certificate chain the bundle endpoint presents (its SVID's intermediate). */
async function endpointChainTop(port: number): Promise<X509Certificate> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => {
      let cert = socket.getPeerCertificate(true);
      while (cert.issuerCertificate !== undefined && cert.issuerCertificate.fingerprint256 !== cert.fingerprint256) cert = cert.issuerCertificate;
      socket.end();
      resolve(new X509Certificate(cert.raw));
    });
    socket.on('error', reject);
  });
}

test("ca revoke waits one refresh hint after the active root's publication while partners authenticate the bundle endpoint by the server SVID; --force goes on", async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshid-revoke-federation-'));
  teardown(t).after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const config = compileServerConfig({
    trust_domain: 'example.org',
    data_dir: path.join(dir, 'data'),
    bind_address: '127.0.0.1:0',
    admin_socket: path.join(dir, 'admin.sock'),
    bundle_endpoint_address: '127.0.0.1:0',
    bundle_endpoint_refresh_hint: '5m',
  });
  const clock = new FakeClock(Date.now());
  const server = await MeshidServer.start({ config, log: silentLogger(), clock });
  teardown(t).after(() => server.stop());
  const admin = new AdminClient(config.adminSocket);
  teardown(t).after(() => admin.close());
  const roots = async () => ((await admin.call('Authorities', 'ListAuthorities', {})).authorities ?? []).filter((a) => a.kind === 'root');
  const revoke = (id: string, force = false) => admin.call('Authorities', 'RevokeAuthority', { id, force });

  /** Whether the chain the endpoint presents ends under `root`. */
  const bundleRoots = async () => ((await admin.call('Bundles', 'GetBundle', {})).x509_authorities ?? []).map((der) => new X509Certificate(der));
  const presentedUnder = async (root: X509Certificate) => (await endpointChainTop(server.bundleEndpoint!.port)).verify(root.publicKey);

  // Two rounds: each taints the active root, which publishes a new one at once, then revokes the tainted one.
  for (const force of [false, true]) {
    const [old] = await roots();
    const [oldRoot] = await bundleRoots();
    await admin.call('Authorities', 'TaintAuthority', { id: old!.id! });
    const next = (await roots()).find((r) => r.state === 'active')!;
    assert.notEqual(next.id, old!.id);
    const newRoot = (await bundleRoots()).find((r) => r.fingerprint256 !== oldRoot!.fingerprint256)!;
    assert.ok(await presentedUnder(oldRoot!), 'after the taint, the endpoint still presents its SVID under the tainted root');
    if (!force) {
      await assert.rejects(
        revoke(old!.id!),
        (err) =>
          isMeshidError(err, 'failed_precondition') &&
          err.message.startsWith(
            `revoking root ${old!.id} now would move the bundle endpoint's SVID onto root ${next.id}, published 0s ago, less than one refresh hint (5m): `,
          ),
      );
      clock.advance(HINT_MS - 1000);
      await assert.rejects(revoke(old!.id!), /published 4m59s ago/);
      assert.ok(await presentedUnder(oldRoot!), 'refused: nothing moved');
      clock.advance(1000);
    }
    await revoke(old!.id!, force);
    assert.deepEqual((await roots()).map((r) => r.id), [next.id], 'revoked');
    assert.ok(await presentedUnder(newRoot), 'the endpoint presents an SVID under the new root');
  }
});
