import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { compileServerConfig, readConfigFile } from '../../../src/server/config.js';
import { serverConfigFrom } from '../../../src/server/cli/run-config.js';

test('defaults follow the issue: 24h X.509, 5m JWT, 7d intermediate, 10y root, 600s join tokens', () => {
  const c = compileServerConfig({ trust_domain: 'example.org' });
  assert.equal(c.x509SvidTtlMs, 24 * 3600e3);
  assert.equal(c.jwtSvidTtlMs, 5 * 60e3);
  assert.equal(c.intermediateTtlMs, 7 * 24 * 3600e3);
  assert.equal(c.rootTtlMs, 3650 * 24 * 3600e3);
  assert.equal(c.joinTokenTtlMs, 600e3);
  assert.equal(c.caKeyType, 'ec-p256');
  assert.ok(Object.isFrozen(c));
});

test('an intermediate that cannot cover a full SVID at activation is refused, naming what to change', () => {
  assert.throws(
    () => compileServerConfig({ trust_domain: 'example.org', intermediate_ttl: '36h', default_x509_svid_ttl: '24h' }),
    (err: Error) => /intermediate_ttl \(1d12h\)/.test(err.message) && /Raise intermediate_ttl above 2d/.test(err.message),
  );
  // Exactly twice is still refused: the successor must be prepared strictly before it is needed.
  assert.throws(() => compileServerConfig({ trust_domain: 'example.org', intermediate_ttl: '48h' }), /intermediate_ttl/);
  assert.doesNotThrow(() => compileServerConfig({ trust_domain: 'example.org', intermediate_ttl: '49h' }));
});

test('a root that cannot cover two intermediates and JWT keys too short for their tokens are refused', () => {
  assert.throws(() => compileServerConfig({ trust_domain: 'example.org', root_ttl: '10d' }), /root_ttl \(10d\).*Raise root_ttl above 14d/);
  assert.throws(() => compileServerConfig({ trust_domain: 'example.org', jwt_key_ttl: '8m' }), /jwt_key_ttl \(8m\)/);
});

test('the TTL coverage rules refuse exactly twice at every level, and count agent_svid_ttl among the SVIDs an intermediate covers', () => {
  // As for the intermediate: a successor prepared at half-life would be needed at the very instant it is made.
  assert.throws(() => compileServerConfig({ trust_domain: 'example.org', root_ttl: '14d' }), /^MeshidError: root_ttl \(14d\) cannot cover a full intermediate lifetime/);
  assert.throws(() => compileServerConfig({ trust_domain: 'example.org', jwt_key_ttl: '10m' }), /^MeshidError: jwt_key_ttl \(10m\) must be more than twice the longest JWT-SVID TTL/);
  // Agent SVIDs are signed by the datacenter's intermediate too: one longer than the workloads' is the one to cover.
  assert.throws(
    () => compileServerConfig({ trust_domain: 'example.org', agent_svid_ttl: '84h' }),
    /^MeshidError: intermediate_ttl \(7d\) cannot cover a full X\.509-SVID lifetime \(3d12h\) .*Raise intermediate_ttl above 7d or lower agent_svid_ttl$/,
  );
  assert.doesNotThrow(() => compileServerConfig({ trust_domain: 'example.org', agent_svid_ttl: '83h' }));
});

test('a TTL too long for a certificate (or a Date) is refused when compiled, so validate refuses what run could not start with', () => {
  // 1000000000d passed validate, then run failed on 'malformed GeneralizedTime "0NaNNaN..."'.
  assert.throws(
    () => compileServerConfig({ trust_domain: 'example.org', root_ttl: '1000000000d' }),
    /^MeshidError: root_ttl \("1000000000d"\) is longer than any setting may be \(36500d, 100 years\): lower it$/,
  );
  assert.throws(() => compileServerConfig({ trust_domain: 'example.org', root_ttl: 1e300 }), /^MeshidError: root_ttl \(1e\+300\) is longer than any setting may be/);
  assert.throws(() => compileServerConfig({ trust_domain: 'example.org', bundle_endpoint_cert_sync_interval: '40000d', bundle_endpoint_address: '127.0.0.1:8443', bundle_endpoint_cert_file: 'c', bundle_endpoint_key_file: 'k' }), /bundle_endpoint_cert_sync_interval \("40000d"\) is longer than/);
  assert.equal(compileServerConfig({ trust_domain: 'example.org', root_ttl: '36500d' }).rootTtlMs, 36_500 * 86_400_000);
});

test('a maximum TTL left unset is the default TTL, even one of a fraction of a second', () => {
  // The default was handed on as text ("1.5"), which is no duration: the operator was told of a setting never written.
  const c = compileServerConfig({ trust_domain: 'example.org', default_x509_svid_ttl: '1500ms', default_jwt_svid_ttl: '2500ms' });
  assert.deepEqual([c.maxX509SvidTtlMs, c.agentSvidTtlMs, c.maxJwtSvidTtlMs], [1500, 1500, 2500]);
});

test('signing limits: a rate too large for a double (Infinity) or a fractional burst is refused, each naming its value and setting', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshid-config-limits-'));
  try {
    const file = path.join(dir, 'server.json');
    // JSON.parse reads 1e400 as Infinity: the limit was off, and validate said nothing.
    fs.writeFileSync(file, '{"trust_domain": "example.org", "agent_sign_rate": 1e400}');
    assert.throws(() => compileServerConfig(readConfigFile(file)), /^MeshidError: agent_sign_rate \(Infinity\) must be a number of CSRs per second above 0, e\.g\. 1000$/);
    fs.writeFileSync(file, '{"trust_domain": "example.org", "global_sign_rate": 1e400}');
    assert.throws(() => compileServerConfig(readConfigFile(file)), /^MeshidError: global_sign_rate \(Infinity\) must be a number of CSRs per second above 0/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  assert.throws(() => compileServerConfig({ trust_domain: 'example.org', agent_sign_burst: 1000.5 }), /^MeshidError: agent_sign_burst \(1000\.5\) must be a whole number, at least 1000/);
  assert.throws(() => compileServerConfig({ trust_domain: 'example.org', agent_sign_burst: 60_000 }), /^MeshidError: global_sign_burst \(50000\) must be a whole number, at least agent_sign_burst \(60000\)$/);
  assert.throws(() => compileServerConfig({ trust_domain: 'example.org', agent_sign_rate: 0 }), /agent_sign_rate \(0\) must be/);
  assert.equal(compileServerConfig({ trust_domain: 'example.org', agent_sign_rate: 0.5 }).agentSignRate, 0.5);
});

test('a datacenter named twice is refused, in the file and as --datacenter, not merged into one', () => {
  assert.throws(
    () => compileServerConfig({ trust_domain: 'example.org', datacenters: ['east', 'west', 'east'] }),
    /^MeshidError: datacenter "east" is named twice in datacenters: remove one, or name the datacenter you meant$/,
  );
  assert.throws(() => serverConfigFrom(['--trust-domain', 'example.org', '--datacenter', 'east', '--datacenter', 'east'], {}), /datacenter "east" is named twice .*\(datacenters was given as --datacenter\)$/);
  assert.deepEqual(compileServerConfig({ trust_domain: 'example.org', datacenters: ['east', 'west'] }).datacenters, ['east', 'west']);
});

test('a default join token TTL longer than token generate allows (7d) is refused, naming the limit', () => {
  assert.throws(
    () => compileServerConfig({ trust_domain: 'example.org', join_token_ttl: '8d' }),
    /^MeshidError: join_token_ttl \(8d\) is longer than a join token may live \(7d\): lower it to 7d or less$/,
  );
  assert.equal(compileServerConfig({ trust_domain: 'example.org', join_token_ttl: '7d' }).joinTokenTtlMs, 7 * 24 * 3600e3);
});

test('invalid trust domains, datacenters and key types are refused', () => {
  assert.throws(() => compileServerConfig({}), /trust domain is required/);
  assert.throws(() => compileServerConfig({ trust_domain: 'Example.org' }), /lowercase/);
  assert.throws(() => compileServerConfig({ trust_domain: 'example.org', datacenters: ['East'] }), /datacenter "East" is invalid/);
  assert.throws(() => compileServerConfig({ trust_domain: 'example.org', ca_key_type: 'dsa' }), /ca_key_type "dsa"/);
  assert.throws(() => compileServerConfig({ trust_domain: 'example.org', default_x509_svid_ttl: 'soon' }), /not a valid duration/);
});

test('an unknown key under federates_with names the config file, as other key errors do', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshid-config-'));
  try {
    const file = path.join(dir, 'server.json');
    const partner = { bundle_endpoint_url: 'https://partner.org/bundle', bundle_profile: 'https_web' };
    fs.writeFileSync(file, JSON.stringify({ trust_domain: 'example.org', federates_with: { 'partner.org': partner } }));
    assert.throws(
      () => compileServerConfig(readConfigFile(file)),
      (err: Error) => err.message.startsWith(`config file ${file}: federates_with "partner.org": unknown key "bundle_profile" (`) || assert.fail(err.message),
    );
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('config files reject unknown keys by name', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshid-config-'));
  try {
    const file = path.join(dir, 'server.json');
    fs.writeFileSync(file, JSON.stringify({ trust_domain: 'example.org', datacentres: ['east'] }));
    assert.throws(() => readConfigFile(file), /unknown key "datacentres" \(did you mean "datacenters"\?\)$/);
    fs.writeFileSync(file, JSON.stringify({ trustDomain: 'example.org' }));
    assert.throws(() => readConfigFile(file), /unknown key "trustDomain" \(did you mean "trust_domain"\?\)$/);
    fs.writeFileSync(file, JSON.stringify({ server: { trust_domain: 'example.org', datacenters: ['east', 'west'] } }));
    assert.deepEqual(compileServerConfig(readConfigFile(file)).datacenters, ['east', 'west']);
    fs.writeFileSync(file, '{ not json');
    assert.throws(() => readConfigFile(file), /not valid JSON/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a spire-server HCL config file is refused as HCL, saying meshid reads JSON and how to write it', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshid-config-'));
  try {
    const file = path.join(dir, 'server.conf');
    for (const text of [
      'server {\n  bind_address = "0.0.0.0"\n  trust_domain = "example.org"\n}\n',
      '# SPIRE server\n\ntrust_domain = "example.org"\n',
      '// plugins\nplugins {\n  DataStore "sql" {\n  }\n}\n',
    ]) {
      fs.writeFileSync(file, text);
      assert.throws(
        () => readConfigFile(file),
        (err: Error) =>
          err.message === `config file ${file} is HCL, as spire-server's config files are: meshid-server reads JSON only; write the settings as a JSON ` +
            'object with snake_case keys, e.g. {"trust_domain": "example.org"} (meshid-server validate --config checks it)',
        text,
      );
    }
    // Broken JSON is still broken JSON, with where it broke.
    fs.writeFileSync(file, '{\n  "trust_domain" = "example.org"\n}\n');
    assert.throws(() => readConfigFile(file), /is not valid JSON: .* at line 2/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a key given twice in a config file is refused with its name and both lines, at any depth', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshid-config-'));
  try {
    const file = path.join(dir, 'server.json');
    fs.writeFileSync(file, '{\n  "trust_domain": "example.org",\n  "datacenters": ["east"],\n  "trust_domain": "example.com"\n}\n');
    assert.throws(() => readConfigFile(file), (err: Error & { code?: string }) =>
      err.code === 'invalid_argument' &&
      err.message === `config file ${file}, line 4: duplicate key "trust_domain" (first on line 2): only the last would take effect; remove one of them`);
    fs.writeFileSync(file, JSON.stringify({ trust_domain: 'example.org', federates_with: [{ trust_domain: 'a.org' }, { trust_domain: 'b.org', bundle_endpoint_url: 'https://b' }] }, null, 2)
      .replace('"bundle_endpoint_url"', '"trust_domain": "c.org",\n      "bundle_endpoint_url"'));
    assert.throws(() => readConfigFile(file), /line 9: duplicate key "trust_domain" in federates_with\[1\] \(first on line 8\)/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('an empty datacenters list is refused, in a file and in raw settings; leaving it out means dc1', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshid-config-'));
  try {
    const file = path.join(dir, 'server.json');
    fs.writeFileSync(file, JSON.stringify({ trust_domain: 'example.org', datacenters: [] }));
    assert.throws(() => readConfigFile(file), (err: Error & { code?: string }) =>
      err.code === 'invalid_argument' &&
      err.message === `config file ${file}: "datacenters" is empty: name at least one (e.g. ["dc1"]), or leave the key out for the default dc1`);
    assert.throws(() => compileServerConfig({ trust_domain: 'example.org', datacenters: [] }), /^MeshidError: datacenters is empty: name at least one, or leave it out for the default dc1$/);
    assert.deepEqual(compileServerConfig({ trust_domain: 'example.org' }).datacenters, ['dc1']);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('config file values of the wrong type, log levels pino lacks and addresses grpc-js cannot bind are refused up front', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshid-config-'));
  try {
    const file = path.join(dir, 'server.json');
    const read = (doc: object): ReturnType<typeof readConfigFile> => {
      fs.writeFileSync(file, JSON.stringify(doc));
      return readConfigFile(file);
    };
    // Each of these used to pass validate and then fail at run, or worse (a string of datacenters made four CAs).
    assert.throws(() => read({ trust_domain: 'example.org', datacenters: 'east' }), /"datacenters" must be an array, got string/);
    assert.throws(() => read({ trust_domain: 'example.org', datacenters: ['east', 7] }), /"datacenters" must be an array of strings/);
    assert.throws(() => read({ trust_domain: 5 }), /"trust_domain" must be a string, got number/);
    assert.throws(() => read({ trust_domain: 'example.org', default_x509_svid_ttl: true }), /"default_x509_svid_ttl" must be a string or a number, got boolean/);
    assert.equal(compileServerConfig(read({ trust_domain: 'example.org', default_x509_svid_ttl: 3600, max_x509_svid_ttl: '2h' })).x509SvidTtlMs, 3_600_000);
    assert.throws(() => compileServerConfig(read({ trust_domain: 'example.org', log_level: 'verbose' })), /log_level "verbose" is not one of trace, debug, info, warn, error, fatal, warning, panic/);
    assert.throws(() => compileServerConfig(read({ trust_domain: 'example.org', bind_address: '8081' })), /bind_address "8081" is not HOST:PORT/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  assert.equal(compileServerConfig({ trust_domain: 'example.org', bind_address: ':8098' }).bindAddress, '0.0.0.0:8098', 'an empty host is every IPv4 address');
  assert.equal(compileServerConfig({ trust_domain: 'example.org', bind_address: '[::1]:8081' }).bindAddress, '[::1]:8081');
});

test('a bundle endpoint on the agent API\'s own port is refused up front, not blamed on "another process" at start', () => {
  const compile = (bind: string, endpoint: string): unknown => compileServerConfig({ trust_domain: 'example.org', bind_address: bind, bundle_endpoint_address: endpoint });
  const clash = /bundle_endpoint_address "[^"]+" and bind_address (?:\(default )?"[^"]+"\)? are the same port: the agent API listens there(?: \([^)]*\))?; give the bundle endpoint a port of its own/;
  for (const [bind, endpoint] of [
    ['127.0.0.1:8081', '127.0.0.1:8081'], ['0.0.0.0:8081', '10.0.0.1:8081'], ['10.0.0.1:8081', ':8081'], ['[::]:8443', '127.0.0.1:8443'],
    ['127.0.0.1:8081', '[::ffff:127.0.0.1]:8081'], ['[::1]:8081', '[0:0:0:0:0:0:0:1]:8081'], ['[::ffff:0.0.0.0]:8081', '10.0.0.1:8081'],
  ]) {
    assert.throws(() => compile(bind!, endpoint!), clash, `${bind} / ${endpoint}`);
  }
  for (const [bind, endpoint] of [
    ['127.0.0.1:8081', '127.0.0.1:8443'], ['127.0.0.1:8081', '127.0.0.2:8081'], ['127.0.0.1:0', '127.0.0.1:0'],
    // IPv4's wildcard leaves IPv6 addresses to others; a specific address of each family coexist.
    ['0.0.0.0:8081', '[::1]:8081'], ['[::1]:8081', '127.0.0.1:8081'],
    // A host name is resolved at start and by validate (listener-clash.test.ts), not here.
    ['127.0.0.1:8081', 'localhost:8081'],
  ]) {
    assert.doesNotThrow(() => compile(bind!, endpoint!), `${bind} / ${endpoint}`);
  }
  assert.throws(() => compileServerConfig({ trust_domain: 'example.org', bundle_endpoint_address: ':8081' }), /and bind_address \(default "0\.0\.0\.0:8081"\) are the same port/);
});

test('a config key named like an Object.prototype member is an unknown key, not a TypeError', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshid-config-'));
  try {
    const file = path.join(dir, 'server.json');
    for (const key of ['constructor', 'toString', '__proto__']) {
      // Written as text: JSON.parse makes "__proto__" an own key, as an operator's file would.
      fs.writeFileSync(file, `{ "trust_domain": "example.org", "${key}": 1 }`);
      assert.throws(() => readConfigFile(file), (err: Error & { code?: string }) => err.code === 'invalid_argument' && err.message.includes(`unknown key "${key}"`) || assert.fail(err.message));
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('the own bundle\'s refresh hint: 5m by default (less when new keys are published sooner), set whole seconds, and never so long that partners could miss a new root or JWT key', () => {
  assert.equal(compileServerConfig({ trust_domain: 'example.org' }).bundleRefreshHintSeconds, 300);
  assert.equal(compileServerConfig({ trust_domain: 'example.org', bundle_endpoint_refresh_hint: '10m' }).bundleRefreshHintSeconds, 600);
  // jwt_key_ttl 1d publishes a new key at its predecessor's half-life, 12h, and it signs once the predecessor cannot
  // cover a 5m JWT-SVID: 11h55m ahead. Partners must poll at least twice in that.
  assert.equal(compileServerConfig({ trust_domain: 'example.org', bundle_endpoint_refresh_hint: '5h57m30s' }).bundleRefreshHintSeconds, 21450);
  assert.throws(
    () => compileServerConfig({ trust_domain: 'example.org', bundle_endpoint_refresh_hint: '7h' }),
    /bundle_endpoint_refresh_hint \(7h\) is longer than half the time a new root or JWT key is published before it is used \(11h55m.*lower the hint to 5h57m30s or less/,
  );
  assert.equal(compileServerConfig({ trust_domain: 'example.org', root_activation_delay: '4m' }).bundleRefreshHintSeconds, 120, 'unset follows a short activation delay');
  assert.throws(() => compileServerConfig({ trust_domain: 'example.org', bundle_endpoint_refresh_hint: '1500ms' }), /whole number of seconds, at least 1s/);
  assert.throws(() => compileServerConfig({ trust_domain: 'example.org', bundle_endpoint_refresh_hint: '0s' }), /bundle_endpoint_refresh_hint must be positive, got "0s"/);
});

test('the refresh hint follows the JWT key\'s real publication lead: half of jwt_key_ttl less max_jwt_svid_ttl', () => {
  // A JWT key of 20m is succeeded at 10m, and the successor signs from 20m - 9m = 11m on: published 1m ahead. A 5m
  // hint (the default, or set) would let partners poll after the new kid's first tokens and refuse them.
  const short = { trust_domain: 'example.org', jwt_key_ttl: '20m', default_jwt_svid_ttl: '9m' };
  assert.equal(compileServerConfig(short).bundleRefreshHintSeconds, 30);
  assert.throws(
    () => compileServerConfig({ ...short, bundle_endpoint_refresh_hint: '5m' }),
    /bundle_endpoint_refresh_hint \(5m\) is longer than half the time a new root or JWT key is published before it is used \(1m:.*lower the hint to 30s or less/,
  );
  // A root of 15d is succeeded at 7d12h and must take over by 15d - 7d: published 12h ahead, not root_activation_delay's 24h.
  const shortRoot = { trust_domain: 'example.org', root_ttl: '15d', jwt_key_ttl: '2d' };
  assert.equal(compileServerConfig({ ...shortRoot, bundle_endpoint_refresh_hint: '6h' }).bundleRefreshHintSeconds, 6 * 3600);
  assert.throws(() => compileServerConfig({ ...shortRoot, bundle_endpoint_refresh_hint: '7h' }), /\(12h:/);
});

test('TTLs that publish a new JWT key or root less than 2s ahead are refused: no refresh hint (1s at least) lets partners keep up', () => {
  // jwt_key_ttl 2m2s against a 1m JWT-SVID: the successor, made at 1m1s, signs from 1m2s, 1s after publication.
  const tight = { trust_domain: 'example.org', jwt_key_ttl: '122s', default_jwt_svid_ttl: '1m' };
  for (const hint of [{}, { bundle_endpoint_refresh_hint: '1s' }]) {
    assert.throws(
      () => compileServerConfig({ ...tight, ...hint }),
      /a new root or JWT key would be published only 1s before it is used \(the least of .*\), so federation partners .*raise root_activation_delay, root_ttl or jwt_key_ttl/,
    );
  }
  // Control: 2s ahead leaves a 1s hint.
  assert.equal(compileServerConfig({ ...tight, jwt_key_ttl: '124s' }).bundleRefreshHintSeconds, 1);
});

test("a spire-server config in SPIRE's JSON layout is read, and SPIRE settings meshid lacks are refused saying what to do instead", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshid-config-'));
  try {
    const file = path.join(dir, 'server.json');
    const write = (doc: unknown): void => fs.writeFileSync(file, JSON.stringify(doc));
    write({ server: { trust_domain: 'example.org' }, health_checks: { listener_enabled: true } });
    assert.equal(compileServerConfig(readConfigFile(file)).healthChecks?.bindPort, 80, "SPIRE's health_checks block, beside the server block");
    write({ server: { trust_domain: 'example.org', bind_address: '0.0.0.0', bind_port: '8081' } });
    assert.throws(() => readConfigFile(file), /"bind_port" is a SPIRE setting meshid has no counterpart for: put the port in bind_address, as host:port/);
    write({ server: { trust_domain: 'example.org', ca_ttl: '24h' } });
    assert.throws(() => readConfigFile(file), /"ca_ttl" is a SPIRE setting .*intermediate_ttl is the closest$/);
    write({ server: { trust_domain: 'example.org' }, plugins: { DataStore: { sql: {} } } });
    assert.throws(() => readConfigFile(file), /"plugins" is a SPIRE setting .*remove the block$/);
    write({ server: { trust_domain: 'example.org', federation: { bundle_endpoint: { address: '0.0.0.0', port: 8443 } } } });
    assert.throws(() => readConfigFile(file), /"federation" is a SPIRE setting .*bundle_endpoint_address \(host:port\)/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("every key of spire-server 1.15's server block is either read or refused saying what to do, never an unknown key", () => {
  // cmd/spire-server/cli/run/run.go, serverConfig, SPIRE 1.15.3.
  const spireKeys = [
    'admin_ids', 'agent_ttl', 'audit_log_enabled', 'bind_address', 'bind_port', 'ca_key_type', 'ca_subject', 'ca_ttl', 'data_dir',
    'default_jwt_svid_ttl', 'default_x509_svid_ttl', 'disable_jwt_svids', 'experimental', 'federation', 'jwt_issuer', 'jwt_key_type',
    'log_file', 'log_format', 'log_level', 'log_source_location', 'max_attested_node_info_staleness', 'profiling_enabled', 'profiling_freq',
    'profiling_names', 'profiling_port', 'proxy_protocol_trusted_cidrs', 'prune_attested_nodes_batch_size', 'prune_attested_nodes_expired_for',
    'prune_tofu_nodes', 'ratelimit', 'socket_path', 'trust_domain',
  ];
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshid-config-'));
  try {
    const file = path.join(dir, 'server.json');
    for (const key of spireKeys) {
      fs.writeFileSync(file, JSON.stringify({ server: { [key]: true } }));
      try {
        readConfigFile(file);
      } catch (err) {
        assert.doesNotMatch((err as Error).message, /unknown key/, key);
      }
    }
    fs.writeFileSync(file, JSON.stringify({ server: { trust_domain: 'example.org', prune_attested_nodes_expired_for: '1d' } }));
    assert.throws(() => readConfigFile(file), /"prune_attested_nodes_expired_for" is a SPIRE setting .*removes an agent once its agent SVID has expired/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('an admin socket path longer than a Unix socket takes is refused when the config is compiled, naming the setting: validate refuses what run would', () => {
  const at = (bytes: number): string => `/${'s'.repeat(bytes - 1)}`;
  assert.equal(compileServerConfig({ trust_domain: 'example.org', admin_socket: at(107) }).adminSocket, at(107));
  assert.throws(
    () => compileServerConfig({ trust_domain: 'example.org', admin_socket: at(108) }),
    /--admin-socket, admin_socket: \/s+ is 108 bytes long, more than the 107 a Unix socket path may have/,
  );
});

test('cross-field rules: max_jwt_svid_ttl below the default, half an upstream CA, a bundle without it, web PKI files without an endpoint, and sign budgets at their edges', () => {
  const td = { trust_domain: 'example.org' };
  const refused = (raw: Record<string, unknown>, message: RegExp) => assert.throws(() => compileServerConfig({ ...td, ...raw }), message, JSON.stringify(raw));
  refused({ default_jwt_svid_ttl: '10m', max_jwt_svid_ttl: '5m' }, /max_jwt_svid_ttl \(5m\) is shorter than default_jwt_svid_ttl \(10m\)/);
  assert.equal(compileServerConfig({ ...td, default_jwt_svid_ttl: '5m', max_jwt_svid_ttl: '5m' }).maxJwtSvidTtlMs, 300_000);
  refused({ upstream_ca_cert: '/nonexistent/ca.pem' }, /--upstream-ca-cert and --upstream-ca-key must be given together/);
  refused({ upstream_ca_key: '/nonexistent/ca.key' }, /--upstream-ca-cert and --upstream-ca-key must be given together/);
  refused({ upstream_bundle: '/nonexistent/roots.pem' }, /--upstream-bundle names the roots of an upstream CA/);
  refused({ bundle_endpoint_cert_file: '/nonexistent/c.pem', bundle_endpoint_key_file: '/nonexistent/k.pem' }, /give --bundle-endpoint-address too/);
  refused({ agent_sign_burst: 999 }, /agent_sign_burst \(999\) must be a whole number, at least 1000/);
  assert.equal(compileServerConfig({ ...td, agent_sign_burst: 1000 }).agentSignBurst, 1000);
  refused({ global_sign_rate: 0 }, /global_sign_rate \(0\) must be a number of CSRs per second above 0/);
});
