import { test } from 'node:test';
import assert from 'node:assert/strict';
import net, { type AddressInfo } from 'node:net';
import { fetchFederatedBundle } from '../../../src/server/federation/bundle-fetch.js';
import { egressProxyFromEnv } from '../../../src/server/federation/egress-proxy.js';
import { compileRelationships } from '../../../src/server/federation/relationship.js';
import { TestCa } from '../../support/fake-sds-cache.js';

/**
 * A real CONNECT proxy on loopback that answers a byte at a time: never silent for long (each byte restarts the
 * CONNECT's own timeout), and done only after `bytes` of them. Resolves `closed` with whether the client closed the
 * connection while the answer was still coming.
 */
async function tricklingProxy(t: { after(fn: () => unknown): void }, bytes: number) {
  let closedMidAnswer!: (mid: boolean) => void;
  const closed = new Promise<boolean>((resolve) => (closedMidAnswer = resolve));
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    sockets.add(client);
    client.on('error', () => {});
    let sent = 0;
    // The status line, then a header that never ends until the last byte.
    const answer = Buffer.from('HTTP/1.1 200 Connection Established\r\nX-Pad: ' + 'a'.repeat(bytes));
    client.once('data', () => {
      const drip = setInterval(() => {
        if (sent === bytes) {
          clearInterval(drip);
          client.end();
          return;
        }
        client.write(answer.subarray(sent, ++sent));
      }, 50);
      client.on('close', () => {
        clearInterval(drip);
        closedMidAnswer(sent < bytes);
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  return { port: (server.address() as AddressInfo).port, closed };
}

test('a fetch through an HTTPS_PROXY that trickles its CONNECT answer fails at the deadline and closes its connection to the proxy then', async (t) => {
  const ca = new TestCa('partner.org');
  t.after(() => ca.dispose());
  // 200 bytes at one per 50 ms: the answer would take 10 s, well past the fetch's 1 s.
  const proxy = await tricklingProxy(t, 200);
  const [rel] = compileRelationships(
    { 'partner.org': { bundle_endpoint_url: 'https://bundles.partner.test:8443/', bundle_endpoint_profile: 'https_spiffe', endpoint_spiffe_id: 'spiffe://partner.org/server' } },
    'example.org',
  );
  const egress = egressProxyFromEnv({ HTTPS_PROXY: `http://127.0.0.1:${proxy.port}` });
  await assert.rejects(
    fetchFederatedBundle(rel!, [ca.rootDer], 1000, egress),
    new RegExp(`cannot tunnel through the proxy http://127\\.0\\.0\\.1:${proxy.port} \\(HTTPS_PROXY\\): no answer to CONNECT bundles\\.partner\\.test:8443 \\(no complete answer within 1 s\\)$`),
  );
  assert.equal(await proxy.closed, true, 'the proxy saw the connection closed while it was still answering, not kept until it finished');
});

test('a fetch through an HTTPS_PROXY that never answers CONNECT fails at the deadline naming the proxy and the CONNECT, not the endpoint alone', async (t) => {
  const ca = new TestCa('partner.org');
  t.after(() => ca.dispose());
  // Accepts and reads, never answers: a proxy stuck on its own way out, as a firewall dropping its packets leaves it.
  const sockets = new Set<net.Socket>();
  const silent = net.createServer((client) => {
    sockets.add(client);
    client.on('error', () => {});
  });
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    for (const s of sockets) s.destroy();
    silent.close();
  });
  const port = (silent.address() as AddressInfo).port;
  const [rel] = compileRelationships(
    { 'partner.org': { bundle_endpoint_url: 'https://bundles.partner.test:8443/', bundle_endpoint_profile: 'https_spiffe', endpoint_spiffe_id: 'spiffe://partner.org/server' } },
    'example.org',
  );
  const egress = egressProxyFromEnv({ HTTPS_PROXY: `http://127.0.0.1:${port}` });
  await assert.rejects(
    fetchFederatedBundle(rel!, [ca.rootDer], 1000, egress),
    (err: Error) => {
      assert.match(err.message, new RegExp(`^bundle endpoint https://bundles\\.partner\\.test:8443/ of partner\\.org: cannot tunnel through the proxy http://127\\.0\\.0\\.1:${port} \\(HTTPS_PROXY\\): no answer to CONNECT bundles\\.partner\\.test:8443`));
      return true;
    },
  );
});
