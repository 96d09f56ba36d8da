/**
 * kill -9 of meshid-server while it signs and rotates authorities: every restart must find keys matching their
 * certificates (startup refuses otherwise), exactly one active authority of each kind, and a bundle that agrees with
 * the CA journal.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { pemToDerList } from '../../src/common/x509/pem.js';
import { parseCertificate } from '../../src/common/x509/certificate.js';
import { AdminClient } from '../../src/server/cli/admin-client.js';
import { tempDir } from '../support/server-kit.js';
import { startServerProcess } from '../support/server-process.js';

interface Authority {
  id: string;
  kind: string;
  datacenter: string;
  state: string;
  fingerprint: string;
}

test('kill -9 during signing, taints and root rotations never leaves keys, journal and bundle out of step', { timeout: 180_000 }, async () => {
  const { dir, cleanup } = tempDir('meshid-server-crash-');
  try {
    for (let round = 0; round < 6; round++) {
      const server = await startServerProcess(dir);
      // A connection of its own: the shared one to the same path may still be backing off from the killed server.
      const admin = new AdminClient(server.adminSocket, 10_000, { 'grpc.use_local_subchannel_pool': 1 });
      // Consistency of what the previous crash left.
      const authorities = ((await admin.call('Authorities', 'ListAuthorities', {})).authorities ?? []) as Authority[];
      const active = (kind: string, dc = ''): number => authorities.filter((a) => a.kind === kind && a.datacenter === dc && a.state === 'active').length;
      assert.equal(active('root'), 1, `round ${round}: one active root`);
      assert.equal(active('intermediate', 'east'), 1, `round ${round}: one active east intermediate`);
      assert.equal(active('intermediate', 'west'), 1, `round ${round}: one active west intermediate`);
      assert.equal(active('jwt'), 1, `round ${round}: one active JWT key`);
      const bundle = await admin.call('Bundles', 'GetBundle', {});
      const bundleRoots = new Set((bundle.x509_authorities ?? []).map((d: Buffer) => parseCertificate(d).fingerprintSha256));
      for (const r of authorities.filter((a) => a.kind === 'root')) {
        assert.ok(bundleRoots.has(r.fingerprint), `round ${round}: root ${r.id} (${r.state}) is in the bundle`);
      }
      assert.equal(bundleRoots.size, authorities.filter((a) => a.kind === 'root').length, `round ${round}: the bundle holds no root the journal does not`);
      const keyFiles = fs.readdirSync(path.join(server.dataDir, 'ca', 'keys')).filter((f) => !f.startsWith('.'));
      assert.equal(keyFiles.length, authorities.length, `round ${round}: one key file per authority, no orphans`);
      assert.equal(pemToDerList((await server.cli(['bundle', 'show'])).out).length, bundleRoots.size);

      // Work in flight when the kill lands: mints, taints of an intermediate, root rotations.
      const busy = (async () => {
        for (let i = 0; ; i++) {
          const list = ((await admin.call('Authorities', 'ListAuthorities', {})).authorities ?? []) as Authority[];
          const east = list.find((a) => a.kind === 'intermediate' && a.datacenter === 'east' && a.state === 'active')!;
          await Promise.all([
            admin.call('Authorities', 'TaintAuthority', { id: east.id }),
            i % 3 === 0 ? admin.call('Authorities', 'RotateRoot', {}) : Promise.resolve(),
            server.cli(['x509', 'mint', '--spiffe-id', `spiffe://example.org/crash/${round}/${i}`]),
          ]);
        }
      })().catch(() => undefined);
      await new Promise((r) => setTimeout(r, 150 + Math.floor(Math.random() * 600)));
      await server.stop('SIGKILL');
      admin.close();
      await busy;
    }
  } finally {
    cleanup();
  }
});
