/**
 * A meshid-server started with HTTPS_PROXY in its environment, as a spire-server behind an egress proxy runs, polls
 * its partner's bundle endpoint through that proxy (a real CONNECT proxy on loopback; the partner's host name resolves
 * only there), and says so in its start-up log, without the proxy's password.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { FakeClock } from '../../src/common/clock.js';
import { bundleToSpiffeJson } from '../../src/common/spiffe/bundle.js';
import { compileServerConfig } from '../../src/server/config.js';
import { MeshidServer } from '../../src/server/server.js';
import { TestCa } from '../support/fake-sds-cache.js';
import { connectProxy } from '../support/connect-proxy.js';
import { capturingLogger } from '../support/log-lines.js';
import { partnerEndpoint } from '../support/partner-endpoint.js';
import { runNode, SERVER_MAIN } from '../support/server-process.js';
import { teardown } from '../support/teardown.js';

test('the server fetches a federated bundle through HTTPS_PROXY, and logs the proxy without its password', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshid-federation-proxy-'));
  teardown(t).after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const partner = new TestCa('partner.org');
  teardown(t).after(() => partner.dispose());
  const endpoint = await partnerEndpoint(t, partner);
  endpoint.body = bundleToSpiffeJson(partner.bundle());
  const proxy = await connectProxy(t);
  const url = `https://bundles.partner.test:${new URL(endpoint.url).port}/`;

  const config = compileServerConfig({
    trust_domain: 'example.org',
    data_dir: path.join(dir, 'data'),
    bind_address: '127.0.0.1:0',
    admin_socket: path.join(dir, 'admin.sock'),
    federates_with: { 'partner.org': { bundle_endpoint_url: url, bundle_endpoint_profile: 'https_spiffe', endpoint_spiffe_id: endpoint.endpointId } },
  });
  const { log, records } = capturingLogger('meshid-server');
  const env = { HTTPS_PROXY: `http://ops:s3cret@127.0.0.1:${proxy.port}` };
  const server = await MeshidServer.start({ config, log, clock: new FakeClock(Date.now()), env });
  teardown(t).after(() => server.stop());
  const seeded = await runNode(SERVER_MAIN, ['bundle', 'set', '--trust-domain', 'partner.org', '--data', bundleToSpiffeJson(partner.bundle()), '--admin-socket', config.adminSocket]);
  assert.equal(seeded.code, 0, seeded.err);

  const status = await server.federation.refresh('partner.org');
  assert.equal(status?.lastError, undefined);
  assert.deepEqual(proxy.connects.map((c) => c.target), [`bundles.partner.test:${new URL(endpoint.url).port}`]);
  assert.equal(endpoint.requests, 1);
  const announced = records().find((r) => r.msg.startsWith('bundle endpoints are fetched through the HTTPS_PROXY proxy'));
  assert.equal(announced?.['proxy'], `http://ops:***@127.0.0.1:${proxy.port}`);
  assert.doesNotMatch(JSON.stringify(records()), /s3cret/);
});
