/**
 * The server's TCP listeners on one port: what cannot both bind is refused naming both settings, what can coexist is
 * not. The rule is checked against the kernel on loopback addresses; wildcard pairs are not bound here (tests listen on
 * loopback only), they are the table's.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { addressesClash, canonicalIp, checkListenersResolved, checkLiteralListeners, type ListenerSetting } from '../../../src/server/listener-clash.js';
import { compileServerConfig } from '../../../src/server/config.js';

const agentApi = (address: string): ListenerSetting => ({ setting: 'bind_address', address, bindsEveryAddress: true });
const endpoint = (address: string): ListenerSetting => ({ setting: 'bundle_endpoint_address', address, bindsEveryAddress: false });

test('canonicalIp: IPv4-mapped IPv6 is its IPv4 address, IPv6 has one spelling, a host name is none', () => {
  assert.equal(canonicalIp('127.0.0.1'), '127.0.0.1');
  assert.equal(canonicalIp('::ffff:127.0.0.1'), '127.0.0.1');
  assert.equal(canonicalIp('::FFFF:7f00:1'), '127.0.0.1');
  assert.equal(canonicalIp('0:0:0:0:0:0:0:0'), '::');
  assert.equal(canonicalIp('FD00:0::2'), 'fd00::2');
  assert.equal(canonicalIp('localhost'), undefined);
  assert.equal(canonicalIp('127.1'), undefined, 'not a literal to the kernel either: getaddrinfo resolves it');
});

test('addressesClash: the same address, 0.0.0.0 beside IPv4, :: beside anything (dual-stack); not 0.0.0.0 beside IPv6 or two specific addresses', () => {
  const clash: Array<[string, string]> = [
    ['127.0.0.1', '127.0.0.1'], ['0.0.0.0', '127.0.0.1'], ['10.0.0.1', '0.0.0.0'], ['::', '127.0.0.1'], ['0.0.0.0', '::'],
    ['::', '::1'], ['fd00::2', '::'], ['::1', '::1'],
  ];
  const coexist: Array<[string, string]> = [['127.0.0.1', '127.0.0.2'], ['0.0.0.0', '::1'], ['::1', '127.0.0.1'], ['fd00::2', '0.0.0.0'], ['::1', 'fd00::2']];
  for (const [a, b] of clash) assert.equal(addressesClash(a, b), true, `${a} / ${b}`);
  for (const [a, b] of coexist) assert.equal(addressesClash(a, b), false, `${a} / ${b}`);
});

test('addressesClash agrees with the kernel on loopback addresses (node:net binds both, as the agent API and bundle endpoint do)', async () => {
  const hosts = ['127.0.0.1', '127.0.0.2', '::1', '::ffff:127.0.0.1'];
  for (const first of hosts) {
    for (const second of hosts) {
      const a = net.createServer();
      await new Promise<void>((resolve, reject) => a.once('error', reject).listen(0, first, resolve));
      const port = (a.address() as net.AddressInfo).port;
      const b = net.createServer();
      const outcome = await new Promise<string>((resolve) => b.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error')).listen(port, second, () => resolve('ok')));
      await new Promise((resolve) => b.close(() => resolve(undefined)));
      await new Promise((resolve) => a.close(resolve));
      assert.equal(outcome === 'EADDRINUSE', addressesClash(canonicalIp(first)!, canonicalIp(second)!), `${first} then ${second} on one port: ${outcome}`);
    }
  }
});

test('the compile step refuses literal addresses that clash, naming both settings and the default bind address', () => {
  assert.throws(
    () => checkLiteralListeners([{ ...agentApi('0.0.0.0:8081'), defaulted: true }, endpoint('[::ffff:10.1.2.3]:8081')]),
    /bundle_endpoint_address "\[::ffff:10\.1\.2\.3\]:8081" and bind_address \(default "0\.0\.0\.0:8081"\) are the same port: the agent API listens there; give the bundle endpoint a port of its own \(e\.g\. 8443\)$/,
  );
  assert.throws(() => checkLiteralListeners([agentApi('127.0.0.1:8443'), endpoint('[::]:8443')]), /the agent API listens there \(\[::\] takes IPv4 as well\); give the bundle endpoint a port of its own \(e\.g\. 8444\)$/);
  assert.doesNotThrow(() => checkLiteralListeners([agentApi('127.0.0.1:8081'), endpoint('localhost:8081')]), 'names wait for resolution');
});

test('the example port skips every configured port, a third listener\'s included, not only the clashing one and 8081', () => {
  const health = (address: string): ListenerSetting => ({ setting: 'health_checks.bind_port', address, bindsEveryAddress: false, prefersIpv4: true });
  assert.throws(
    () => checkLiteralListeners([agentApi('127.0.0.1:8443'), endpoint('0.0.0.0:8443'), health('127.0.0.1:8444')]),
    /give the bundle endpoint a port of its own \(e\.g\. 8445\)$/,
  );
  assert.throws(
    () => checkLiteralListeners([agentApi('127.0.0.1:8082'), endpoint('127.0.0.1:8080'), health('127.0.0.1:8080')]),
    /give health_checks\.bind_port a port of its own \(e\.g\. 8083\)$/,
  );
});

test('resolved: localhost beside 127.0.0.1 on one port is refused naming both settings and what the name is; another port is not', async () => {
  await assert.rejects(
    checkListenersResolved([agentApi('127.0.0.1:8081'), endpoint('localhost:8081')]),
    (err: Error & { code?: string }) => {
      assert.equal(err.code, 'invalid_argument');
      assert.match(err.message, /^bundle_endpoint_address "localhost:8081" and bind_address "127\.0\.0\.1:8081" are the same port: the agent API listens there \(localhost is 127\.0\.0\.1\); give the bundle endpoint a port of its own/);
      return true;
    },
  );
  await assert.rejects(checkListenersResolved([agentApi('localhost:8081'), endpoint('0.0.0.0:8081')]), /bind_address "localhost:8081" are the same port/);
  await checkListenersResolved([agentApi('localhost:8081'), endpoint('localhost:8443')]);
  await checkListenersResolved([agentApi('127.0.0.1:8081'), endpoint('name.invalid:8081')]);
});

test('resolved (a stand-in resolver for a name with two addresses): the agent API holds every address of its name, the bundle endpoint only the first', async () => {
  const lookup = async (host: string, all: boolean): Promise<string[]> => {
    assert.equal(host, 'dual.example');
    return all ? ['::1', '127.0.0.1'] : ['::1'];
  };
  await assert.rejects(checkListenersResolved([agentApi('dual.example:8081'), endpoint('127.0.0.1:8081')], lookup), /dual\.example is 127\.0\.0\.1/);
  // node:net listens on ::1 only, which 127.0.0.1 leaves free.
  await checkListenersResolved([agentApi('127.0.0.1:8081'), endpoint('dual.example:8081')], lookup);
});

test('a link-local IPv6 address with its zone (fe80::1%eth0) is an address, not a TypeError: compiled, compared with its zone', () => {
  assert.equal(canonicalIp('FE80:0::1%eth0'), 'fe80::1%eth0');
  assert.doesNotThrow(() => compileServerConfig({ trust_domain: 'example.org', bind_address: '[fe80::1%eth0]:8081' }));
  assert.doesNotThrow(() => checkLiteralListeners([agentApi('[fe80::1%eth0]:8081'), endpoint('[fe80::1%eth1]:8081')]), 'another interface, another address');
  assert.throws(() => checkLiteralListeners([agentApi('[fe80::1%eth0]:8081'), endpoint('[fe80:0::1%eth0]:8081')]), /are the same port: the agent API listens there/);
  assert.throws(() => checkLiteralListeners([agentApi('[::]:8081'), endpoint('[fe80::1%eth0]:8081')]), /are the same port/);
});

test('resolved (a stand-in resolver, standing for a slow or unreachable one): no name is looked up when no other listener shares its port', async () => {
  const asked: string[] = [];
  const lookup = async (host: string): Promise<string[]> => {
    asked.push(host);
    return ['127.0.0.1'];
  };
  await checkListenersResolved([agentApi('agent.example:8081')], lookup);
  await checkListenersResolved([agentApi('agent.example:8081'), endpoint('bundle.example:8443')], lookup);
  await checkListenersResolved([agentApi('agent.example:0'), endpoint('bundle.example:0')], lookup);
  assert.deepEqual(asked, []);
  await assert.rejects(checkListenersResolved([agentApi('agent.example:8081'), endpoint('127.0.0.1:8081')], lookup), /the same port/);
  assert.deepEqual(asked, ['agent.example']);
});

test('resolved (a stand-in resolver answering ::1 first, as Debian\'s /etc/hosts does for localhost): the health listener holds the name\'s IPv4 address, as it binds', async () => {
  const lookup = async (host: string, all: boolean): Promise<string[]> => {
    assert.equal(host, 'dual.example');
    return all ? ['::1', '127.0.0.1'] : ['::1'];
  };
  const health = (address: string): ListenerSetting => ({ setting: 'health_checks.bind_port', address, bindsEveryAddress: false, prefersIpv4: true });
  await assert.rejects(checkListenersResolved([endpoint('127.0.0.1:8080'), health('dual.example:8080')], lookup), /health_checks\.bind_port "dual\.example:8080" and bundle_endpoint_address "127\.0\.0\.1:8080" are the same port: the bundle_endpoint_address listens there \(dual\.example is 127\.0\.0\.1\); give health_checks\.bind_port a port of its own \(e\.g\. 8082\)$/);
  await checkListenersResolved([endpoint('[::1]:8080'), health('dual.example:8080')], lookup);
});
