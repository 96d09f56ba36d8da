import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseHostPort } from '../../../src/common/host-port.js';
import { compileAgentConfig } from '../../../src/agent/config.js';
import { compileServerConfig } from '../../../src/server/config.js';

test('listen and dial addresses accept the same hosts: names, IPv4, bracketed IPv6', () => {
  for (const use of ['listen', 'dial'] as const) {
    assert.deepEqual(parseHostPort('meshid-server.internal:8081', 's', use), { host: 'meshid-server.internal', port: 8081 });
    assert.deepEqual(parseHostPort('_grpc.example.org.:1', 's', use), { host: '_grpc.example.org.', port: 1 });
    assert.deepEqual(parseHostPort('10.0.0.1:65535', 's', use), { host: '10.0.0.1', port: 65535 });
    assert.deepEqual(parseHostPort('[::1]:8081', 's', use), { host: '::1', port: 8081 });
    assert.deepEqual(parseHostPort('[::ffff:10.0.0.1]:8081', 's', use), { host: '::ffff:10.0.0.1', port: 8081 });
  }
});

test('a listener may take port 0 (a free port), an empty host (every IPv4 address) and a zoned IPv6 address; a dialed server may not', () => {
  assert.deepEqual(parseHostPort('127.0.0.1:0', 'bind_address'), { host: '127.0.0.1', port: 0 });
  assert.deepEqual(parseHostPort(':8081', 'bind_address'), { host: '0.0.0.0', port: 8081 });
  assert.deepEqual(parseHostPort('[fe80::1%eth0]:8081', 'bind_address'), { host: 'fe80::1%eth0', port: 8081 });
  assert.throws(() => parseHostPort('server:0', 'server_address', 'dial'), /^MeshidError: server_address "server:0" is not HOST:PORT: the port must be a number from 1 to 65535 \(e\.g\. /);
  assert.throws(() => parseHostPort(':8081', 'server_address', 'dial'), /the host is missing/);
  assert.throws(() => parseHostPort('[fe80::1%eth0]:8081', 'server_address', 'dial'), /is not an IPv6 address in brackets/);
});

test('a host that no resolver could take is refused by name, with what to write, for listeners and dialed servers alike', () => {
  const cases: [string, RegExp][] = [
    ['a b:8081', /"a b" is neither a host name nor an IP address/],
    ['h/x:8081', /"h\/x" is neither a host name nor an IP address/],
    ['-h:8081', /is neither a host name nor an IP address/],
    ['10.1.2:8081', /"10\.1\.2" is neither a host name nor an IP address/],
    ['300.1.1.1:8081', /is neither a host name nor an IP address/],
    ['[zz]:8081', /"\[zz\]" is not an IPv6 address in brackets/],
    ['[::1:8081', /is not an IPv6 address in brackets/],
    ['::1:8081', /an IPv6 address goes in brackets, as in \[::1\]:8081/],
    ['h:65536', /the port must be a number from/],
    ['h:-1', /the port must be a number from/],
    ['h:', /the port must be a number from/],
    ['8081', /there is no port/],
    ['http://h:8081', /is neither a host name nor an IP address|goes in brackets/],
  ];
  for (const use of ['listen', 'dial'] as const) {
    for (const [address, why] of cases) {
      assert.throws(() => parseHostPort(address, 'setting', use), (err: Error) => err.message.startsWith(`setting "${address}" is not HOST:PORT: `) && why.test(err.message), `${use} ${address}`);
    }
  }
});

test("the server's listeners and the agent's server address go through the one parser", () => {
  for (const bad of ['a b:8081', '[zz]:8081', '10.1.2:8081']) {
    assert.throws(() => compileServerConfig({ trust_domain: 'example.org', bind_address: bad }), /^MeshidError: bind_address ".*" is not HOST:PORT: /, bad);
    assert.throws(() => compileServerConfig({ trust_domain: 'example.org', bundle_endpoint_address: bad }), /^MeshidError: bundle_endpoint_address ".*" is not HOST:PORT: /, bad);
    assert.throws(() => compileAgentConfig({ server_address: bad }), /^MeshidError: server_address \(--server-address\) ".*" is not HOST:PORT: /, bad);
  }
  assert.equal(compileAgentConfig({ server_address: 'meshid-server:8081' }).serverAddress, 'meshid-server:8081');
});

test('a join token given as the address is not repeated in the error', () => {
  const token = 'c0ffee'.repeat(7).slice(0, 40);
  assert.throws(
    () => compileAgentConfig({ server_address: token }),
    (err: Error) => !err.message.includes(token) && /^server_address \(--server-address\) \(a token or JWT-SVID, not repeated here: .*\) is not HOST:PORT: there is no port/.test(err.message),
  );
});

test('a JWT-SVID given as the host of an address is not repeated in the error either', () => {
  const jwt = `eyJhbGciOiJFUzI1NiJ9.${'eyJzdWIiOiJzcGlmZmU6Ly9leGFtcGxlLm9yZy93In0'.repeat(2)}.${'c2lnbmF0dXJl'.repeat(4)}`;
  assert.throws(
    () => compileAgentConfig({ server_address: `${jwt}:8081` }),
    (err: Error) => !err.message.includes(jwt) && /^server_address \(--server-address\) \(a token or JWT-SVID, not repeated here: .*\) is not HOST:PORT: the host must be a host name or an IP address/.test(err.message),
  );
});

test('a join token with a port after it is not repeated in the error', () => {
  const token = 'c0ffee'.repeat(7).slice(0, 40);
  assert.throws(
    () => compileAgentConfig({ server_address: `${token}:8081` }),
    (err: Error) => !err.message.includes(token) && /is not HOST:PORT: the host must be a host name or an IP address/.test(err.message),
  );
});
