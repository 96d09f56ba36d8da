/**
 * The CONNECT request ProxyTunnelAgent sends and the answers it takes (proxy-tunnel.ts), against real proxies on
 * loopback: the credentials as the proxy receives them, an IPv6 endpoint's target, and answers other than 200.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import https from 'node:https';
import net, { type AddressInfo } from 'node:net';
import { bundleToSpiffeJson } from '../../../src/common/spiffe/bundle.js';
import { fetchFederatedBundle } from '../../../src/server/federation/bundle-fetch.js';
import { egressProxyFromEnv } from '../../../src/server/federation/egress-proxy.js';
import { ProxyTunnelAgent } from '../../../src/server/federation/proxy-tunnel.js';
import { compileRelationships } from '../../../src/server/federation/relationship.js';
import { TestCa } from '../../support/fake-sds-cache.js';
import { partnerEndpoint } from '../../support/partner-endpoint.js';
import { connectProxy } from '../../support/connect-proxy.js';

async function setUp(t: TestContext, host: string) {
  const ca = new TestCa('partner.org');
  t.after(() => ca.dispose());
  const endpoint = await partnerEndpoint(t, ca);
  endpoint.body = bundleToSpiffeJson(ca.bundle());
  const port = Number(new URL(endpoint.url).port);
  const [rel] = compileRelationships(
    { 'partner.org': { bundle_endpoint_url: `https://${host}:${port}/`, bundle_endpoint_profile: 'https_spiffe', endpoint_spiffe_id: endpoint.endpointId } },
    'example.org',
  );
  return { ca, port, rel: rel! };
}

test('proxy credentials reach the proxy %-decoded, and a user name without a password still authenticates', async (t) => {
  const { ca, port, rel } = await setUp(t, 'partner.test');
  const proxy = await connectProxy(t);
  const basic = (s: string): string => `Basic ${Buffer.from(s).toString('base64')}`;
  await fetchFederatedBundle(rel, [ca.rootDer], 5000, egressProxyFromEnv({ HTTPS_PROXY: `http://ops%40corp:p%3Ass%25@127.0.0.1:${proxy.port}` }));
  await fetchFederatedBundle(rel, [ca.rootDer], 5000, egressProxyFromEnv({ HTTPS_PROXY: `http://ops@127.0.0.1:${proxy.port}` }));
  await fetchFederatedBundle(rel, [ca.rootDer], 5000, egressProxyFromEnv({ HTTPS_PROXY: `http://127.0.0.1:${proxy.port}` }));
  assert.deepEqual(
    proxy.connects.map((c) => c.authorization),
    [basic('ops@corp:p:ss%'), basic('ops:'), undefined],
  );
  assert.equal(proxy.connects[0]!.target, `partner.test:${port}`);
});

test('an IPv6 endpoint is named in brackets in the CONNECT target', async (t) => {
  const { ca, port, rel } = await setUp(t, '[fd00::1]');
  const proxy = await connectProxy(t);
  await fetchFederatedBundle(rel, [ca.rootDer], 5000, egressProxyFromEnv({ HTTPS_PROXY: `http://127.0.0.1:${proxy.port}` }));
  assert.deepEqual(proxy.connects.map((c) => c.target), [`[fd00::1]:${port}`]);
});

test('a proxy answering CONNECT with a 2xx other than 200 has opened no tunnel: the fetch fails naming the answer', async (t) => {
  const { ca, port, rel } = await setUp(t, 'partner.test');
  const proxy = await connectProxy(t);
  proxy.refuseWith = 204;
  await assert.rejects(
    fetchFederatedBundle(rel, [ca.rootDer], 5000, egressProxyFromEnv({ HTTPS_PROXY: `http://127.0.0.1:${proxy.port}` })),
    { message: `bundle endpoint https://partner.test:${port}/ of partner.org: the proxy http://127.0.0.1:${proxy.port} (HTTPS_PROXY) answered HTTP 204 to CONNECT partner.test:${port}` },
  );
});

test('a tunnel asked for after its fetch already ended is never opened: no CONNECT reaches the proxy', async (t) => {
  let connections = 0;
  const server = net.createServer((socket) => {
    connections++;
    socket.destroy();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => server.close());
  const ended = new AbortController();
  ended.abort(new Error('the deadline passed'));
  const agent = new ProxyTunnelAgent(new URL(`http://127.0.0.1:${(server.address() as AddressInfo).port}`), 5000, ended.signal);
  const failure = await new Promise<Error>((resolve) => https.get('https://partner.test:8443/', { agent }, () => resolve(new Error('answered'))).on('error', resolve));
  assert.equal(failure.message, `cannot tunnel through the proxy http://127.0.0.1:${(server.address() as AddressInfo).port} (HTTPS_PROXY): no answer to CONNECT partner.test:8443 (the deadline passed)`);
  // The listen socket's accept would have run by now had a connection been made; give it one turn to be sure.
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(connections, 0);
});

/**
 * A listener on port `port` of a loopback address of its own (127.x.y.z, so that parallel tests and other processes
 * holding 127.0.0.1:80 do not clash), recording the first bytes of each connection and then hanging up. undefined
 * where this process may not listen on a port below 1024.
 */
async function firstBytesListener(t: TestContext, port: number, host?: string): Promise<{ host: string; seen: Buffer[] } | undefined> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const address = host ?? `127.${1 + Math.floor(Math.random() * 254)}.${Math.floor(Math.random() * 256)}.${1 + Math.floor(Math.random() * 254)}`;
    const seen: Buffer[] = [];
    const server = net.createServer((socket) => socket.once('data', (chunk: Buffer) => {
      seen.push(chunk);
      socket.destroy();
    }));
    const failure = await new Promise<NodeJS.ErrnoException | undefined>((resolve) => {
      server.once('error', resolve);
      server.listen(port, address, () => resolve(undefined));
    });
    if (failure?.code === 'EACCES') return undefined;
    if (failure?.code === 'EADDRINUSE' && host === undefined) continue;
    if (failure !== undefined) throw failure;
    t.after(() => server.close());
    return { host: address, seen };
  }
  throw new Error('no free loopback address for the proxy stub');
}

test('an HTTPS_PROXY without a port is dialled on 80 when http:// (or given bare) and on 443 when https://, as Go dials it', async (t) => {
  const plain = await firstBytesListener(t, 80);
  if (plain === undefined) {
    t.skip('cannot listen on ports below 1024 here');
    return;
  }
  const tlsProxy = (await firstBytesListener(t, 443, plain.host))!;
  const { ca, port, rel } = await setUp(t, 'partner.test');
  for (const value of [`http://${plain.host}`, plain.host, `https://${plain.host}`]) {
    await assert.rejects(fetchFederatedBundle(rel, [ca.rootDer], 5000, egressProxyFromEnv({ HTTPS_PROXY: value })), Error, value);
  }
  assert.deepEqual(plain.seen.map((b) => b.toString('latin1').split('\r\n')[0]), [`CONNECT partner.test:${port} HTTP/1.1`, `CONNECT partner.test:${port} HTTP/1.1`]);
  // A TLS handshake record (content type 22) opens the connection to an https:// proxy: TLS before the CONNECT.
  assert.deepEqual(tlsProxy.seen.map((b) => b[0]), [22]);
});
