import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { compileAgentConfig, readAgentConfigFile } from '../../../src/agent/config.js';
import { rawConfigFrom } from '../../../src/agent/cli/run-config.js';
import { compileServerConfig } from '../../../src/server/config.js';
import { isMeshidError } from '../../../src/common/errors.js';
import { tempDir } from '../../support/server-kit.js';

function withConfig(content: unknown, fn: (file: string) => void): void {
  const t = tempDir('meshid-agent-config-');
  try {
    const file = path.join(t.dir, 'agent.json');
    fs.writeFileSync(file, typeof content === 'string' ? content : JSON.stringify(content));
    fn(file);
  } finally {
    t.cleanup();
  }
}

test('defaults: socket /tmp/meshid-agent/public/api.sock, data dir .meshid/agent, SPIRE SDS names, no insecure bootstrap', () => {
  const c = compileAgentConfig({ server_address: 'server:8081' });
  assert.equal(c.socketPath, '/tmp/meshid-agent/public/api.sock');
  assert.equal(c.dataDir, path.resolve('.meshid/agent'));
  assert.equal(c.insecureBootstrap, false);
  assert.equal(c.sds.defaultSvidName, 'default');
  assert.equal(c.sds.defaultBundleName, 'ROOTCA');
  assert.equal(c.trustDomain, undefined);
  assert.ok(Object.isFrozen(c));
});

test('flags override the config file; spire-agent spellings are accepted', () => {
  withConfig({ server_address: 'file:1', data_dir: '/from/file', join_token: 'from-file', sds: { default_svid_name: 'mine' } }, (file) => {
    const { raw } = rawConfigFrom(['--config', file, '-serverAddress', 'flag:2', '--join-token', 'from-flag']);
    const c = compileAgentConfig(raw);
    assert.equal(c.serverAddress, 'flag:2');
    assert.equal(c.joinToken, 'from-flag');
    assert.equal(c.dataDir, '/from/file');
    assert.equal(c.sds.defaultSvidName, 'mine');
  });
});

test('unknown keys, wrong types and bad JSON in the config file are errors that name the key', () => {
  withConfig({ server_address: 'a:1', sever_address: 'typo' }, (file) => assert.throws(() => readAgentConfigFile(file), /unknown key "sever_address"/));
  withConfig({ insecure_bootstrap: 'yes' }, (file) => assert.throws(() => readAgentConfigFile(file), /"insecure_bootstrap" must be a boolean, got string/));
  withConfig({ sds: { default_name: 'x' } }, (file) => assert.throws(() => readAgentConfigFile(file), /sds: unknown key "default_name"/));
  withConfig('{"server_address": ', (file) => assert.throws(() => readAgentConfigFile(file), /not valid JSON/));
  withConfig({ agent: { server_address: 'a:1' } }, (file) => assert.equal(readAgentConfigFile(file).server_address, 'a:1'));
});

test('a key given twice in the config file is refused with its name and both lines, in the sds block too', () => {
  withConfig('{\n  "server_address": "a:1",\n  "data_dir": "/d",\n  "server_address": "b:1"\n}', (file) =>
    assert.throws(() => readAgentConfigFile(file), (err: Error & { code?: string }) =>
      err.code === 'invalid_argument' &&
      err.message === `config file ${file}, line 4: duplicate key "server_address" (first on line 2): only the last would take effect; remove one of them`));
  withConfig('{"server_address": "a:1", "sds": {\n"default_svid_name": "x",\n"default_svid_name": "y"}}', (file) =>
    assert.throws(() => readAgentConfigFile(file), /line 3: duplicate key "default_svid_name" in sds \(first on line 2\)/));
  withConfig('{"agent": {"server_address": "a:1", "server_address": "b:1"}}', (file) =>
    assert.throws(() => readAgentConfigFile(file), /line 1: duplicate key "server_address" in agent \(first on line 1\)/));
});

test('an unknown key suggests the key meant: the flag\'s own key, a camelCase or flag spelling, a typo', () => {
  // --trust-bundle sets trust_bundle_path (SPIRE's name): the flag's spelling as a key is the likeliest slip.
  const cases: Array<[Record<string, unknown>, string]> = [
    [{ trust_bundle: '/b.pem' }, 'unknown key "trust_bundle" (did you mean "trust_bundle_path"?)'],
    [{ serverAddress: 'a:1' }, 'unknown key "serverAddress" (did you mean "server_address"?)'],
    [{ 'socket-path': '/s' }, 'unknown key "socket-path" (did you mean "socket_path"?)'],
    [{ sever_address: 'a:1' }, 'unknown key "sever_address" (did you mean "server_address"?)'],
  ];
  for (const [doc, message] of cases) {
    withConfig(doc, (file) => assert.throws(() => readAgentConfigFile(file), (err: Error) => err.message.endsWith(message) || assert.fail(err.message)));
  }
  withConfig({ colour: 'blue' }, (file) => assert.throws(() => readAgentConfigFile(file), /unknown key "colour" \(known: server_address, trust_bundle_path, /));
});

test('an unknown key is not told to be a key the file already sets', () => {
  // Renaming it as suggested would leave the key twice in the object, and JSON.parse keeps the last one silently.
  withConfig({ trust_bundle_path: '/a.pem', trust_bundle: '/b.pem' }, (file) =>
    assert.throws(() => readAgentConfigFile(file), /unknown key "trust_bundle" \(known: server_address, trust_bundle_path, /),
  );
  withConfig({ server_address: 'a:1', serverAddress: 'b:1' }, (file) => assert.throws(() => readAgentConfigFile(file), /unknown key "serverAddress" \(known: /));
});

test('cross-field and value checks say what to change', () => {
  assert.throws(() => compileAgentConfig({}), /--server-address host:port/);
  for (const bad of ['server', 'server:0', 'server:70000', 'http://server:80', ':8081']) {
    assert.throws(() => compileAgentConfig({ server_address: bad }), /is not HOST:PORT/, bad);
  }
  assert.equal(compileAgentConfig({ server_address: '[::1]:8081' }).serverAddress, '[::1]:8081');
  assert.throws(() => compileAgentConfig({ server_address: 'a:1', trust_bundle_path: 'b.pem', insecure_bootstrap: true }), /exclude each other/);
  assert.throws(() => compileAgentConfig({ server_address: 'a:1', log_level: 'loud' }), /log level "loud"/);
  assert.throws(() => compileAgentConfig({ server_address: 'a:1', trust_domain: 'Example.org' }), /trust domain/);
  assert.throws(() => compileAgentConfig({ server_address: 'a:1', join_token: '  ' }), /join token is empty/);
  assert.throws(() => compileAgentConfig({ server_address: 'a:1', max_connections_per_uid: 0 }), /max_connections_per_uid must be a positive integer/);
  assert.equal(compileAgentConfig({ server_address: 'a:1' }).maxConnectionsPerUid, 1024);
  assert.equal(compileAgentConfig({ server_address: 'a:1', max_connections_per_uid: 4096 }).maxConnectionsPerUid, 4096);
  assert.throws(() => compileAgentConfig({ server_address: 'a:1', max_calls_per_uid: 2.5 }), /max_calls_per_uid must be a positive integer/);
  assert.equal(compileAgentConfig({ server_address: 'a:1' }).maxCallsPerUid, 4096);
  assert.equal(compileAgentConfig({ server_address: 'a:1', max_calls_per_uid: 10_000 }).maxCallsPerUid, 10_000);
  assert.throws(() => compileAgentConfig({ server_address: 'a:1', sds: { default_svid_name: 'ROOTCA' } }), /distinct/);
  assert.equal(compileAgentConfig({ server_address: 'a:1', trust_domain: 'spiffe://example.org' }).trustDomain, 'example.org');
});

test('allowed_foreign_jwt_claims: a list of claim names from the config file, none by default', () => {
  assert.deepEqual(compileAgentConfig({ server_address: 'a:1' }).allowedForeignJwtClaims, []);
  withConfig({ server_address: 'a:1', allowed_foreign_jwt_claims: ['iss', 'iat'] }, (file) =>
    assert.deepEqual(compileAgentConfig(readAgentConfigFile(file)).allowedForeignJwtClaims, ['iss', 'iat']),
  );
  withConfig({ allowed_foreign_jwt_claims: 'iss' }, (file) => assert.throws(() => readAgentConfigFile(file), /"allowed_foreign_jwt_claims" must be an array, got string/));
  withConfig({ server_address: 'a:1', allowed_foreign_jwt_claims: ['iss', 3] }, (file) =>
    assert.throws(() => compileAgentConfig(readAgentConfigFile(file)), /allowed_foreign_jwt_claims must be a list of claim names/),
  );
  // An empty name (a stray comma in a generated list) names no claim: refused, not taken to allow a claim called "".
  assert.throws(() => compileAgentConfig({ server_address: 'a:1', allowed_foreign_jwt_claims: ['iss', ''] }), /allowed_foreign_jwt_claims must be a list of claim names/);
});

test('allow_unauthenticated_verifiers: off by default; the config key or the flag (spire-agent spelling too) turns it on for both APIs', () => {
  const off = compileAgentConfig({ server_address: 'a:1' });
  assert.equal(off.allowUnauthenticatedVerifiers, false);
  assert.equal(off.sds.allowUnauthenticatedVerifiers, false);
  withConfig({ server_address: 'a:1', allow_unauthenticated_verifiers: true }, (file) => {
    assert.equal(compileAgentConfig(readAgentConfigFile(file)).sds.allowUnauthenticatedVerifiers, true);
    assert.equal(compileAgentConfig(rawConfigFrom(['--config', file, '--allow-unauthenticated-verifiers=false']).raw).allowUnauthenticatedVerifiers, false);
  });
  const flagged = compileAgentConfig(rawConfigFrom(['-serverAddress', 'a:1', '-allowUnauthenticatedVerifiers']).raw);
  assert.equal(flagged.allowUnauthenticatedVerifiers, true);
  assert.equal(flagged.sds.allowUnauthenticatedVerifiers, true);
});

test("a spire-agent config in SPIRE's JSON layout: health_checks beside the agent block works, and SPIRE settings meshid lacks are refused saying what to do", () => {
  const spire = { agent: { server_address: 'spire-server:8081', trust_domain: 'example.org' }, health_checks: { listener_enabled: true, bind_port: '8080' } };
  withConfig(spire, (file) => {
    const raw = readAgentConfigFile(file);
    assert.equal(raw.server_address, 'spire-server:8081');
    assert.deepEqual(raw.health_checks, { listener_enabled: true, bind_port: '8080' });
  });
  withConfig({ ...spire, plugins: { NodeAttestor: { join_token: {} } } }, (file) =>
    assert.throws(() => readAgentConfigFile(file), /"plugins" is a SPIRE setting meshid has no counterpart for: meshid-agent's plugins are built in .*remove the block$/),
  );
  withConfig({ server_address: 'meshid-server:8081', datacenter: 'west' }, (file) =>
    assert.throws(() => readAgentConfigFile(file), /: "datacenter" is not an agent setting: the join token decides the agent's datacenter: generate it for that datacenter \(`meshid-server token generate --datacenter <dc>`\)/),
  );
  withConfig({ agent: { server_address: 'spire-server', server_port: '8081' } }, (file) =>
    assert.throws(() => readAgentConfigFile(file), /"server_port" is a SPIRE setting meshid has no counterpart for: put the port in server_address, as host:port/),
  );
  withConfig({ agent: { server_address: 'a:1', trust_bundle_url: 'https://x/b.pem' } }, (file) => assert.throws(() => readAgentConfigFile(file), /set trust_bundle_path$/));
  withConfig({ agent: { server_address: 'a:1', retry_bootstrap: true } }, (file) =>
    assert.throws(() => readAgentConfigFile(file), /"retry_bootstrap" is a SPIRE setting .*: the agent retries its first attestation while the server cannot be reached/),
  );
  withConfig({ agent: { health_checks: {} }, health_checks: {} }, (file) =>
    assert.throws(() => readAgentConfigFile(file), /"health_checks" is given both at the top level and in "agent": keep one/),
  );
});

test("every key of spire-agent 1.15's agent block is either read or refused saying what to do, never an unknown key", () => {
  // cmd/spire-agent/cli/run/run.go, agentConfig, SPIRE 1.15.3 (keys of the agent block; plugins and telemetry are
  // blocks beside it, checked above).
  const spireKeys = [
    'admin_socket_path', 'allow_unauthenticated_verifiers', 'allowed_foreign_jwt_claims', 'authorized_delegates', 'availability_target',
    'data_dir', 'disable_sds_api', 'disable_workload_api', 'experimental', 'insecure_bootstrap', 'join_token', 'join_token_file',
    'jwt_svid_cache_max_size', 'log_file', 'log_format', 'log_level', 'log_selectors', 'log_source_location', 'profiling_enabled',
    'profiling_freq', 'profiling_names', 'profiling_port', 'rebootstrap_delay', 'rebootstrap_mode', 'sds', 'server_address', 'server_port',
    'socket_path', 'trust_bundle_format', 'trust_bundle_path', 'trust_bundle_spiffe_workload_api', 'trust_bundle_unix_socket',
    'trust_bundle_url', 'trust_domain', 'workload_x509_svid_key_type', 'x509_svid_cache_max_size',
  ];
  for (const key of spireKeys) {
    withConfig({ agent: { [key]: 'x' } }, (file) => {
      try {
        readAgentConfigFile(file);
      } catch (err) {
        assert.doesNotMatch((err as Error).message, /unknown key/, key);
      }
    });
  }
  assert.throws(() => rawConfigFrom(['-rebootstrapMode', 'auto']), /flag -rebootstrapMode is not supported by meshid: an agent whose SVID the server no longer accepts attests again only when restarted with a new join token/);
  for (const key of ['availability_target', 'rebootstrap_mode', 'log_selectors', 'x509_svid_cache_max_size', 'trust_bundle_unix_socket']) {
    withConfig({ agent: { [key]: 'x' } }, (file) => assert.throws(() => readAgentConfigFile(file), new RegExp(`"${key}" is a SPIRE setting meshid has no counterpart for: .+`)));
  }
});

test('join_token_file: the token is read from the file at start and trimmed; with join_token too, or empty, or unreadable, it is refused', () => {
  const t = tempDir('meshid-agent-token-file-');
  try {
    const file = path.join(t.dir, 'token');
    fs.writeFileSync(file, ' tok-123\n', { mode: 0o600 });
    assert.equal(compileAgentConfig({ server_address: 'a:1', join_token_file: file }).joinToken, 'tok-123');
    const { raw } = rawConfigFrom(['--server-address', 'a:1', '-joinTokenFile', file]);
    assert.equal(compileAgentConfig(raw).joinToken, 'tok-123');
    assert.throws(() => compileAgentConfig({ server_address: 'a:1', join_token: 'x', join_token_file: file }), /a join token and a join token file are both given .*keep one of them/);
    fs.writeFileSync(file, '\n');
    assert.throws(() => compileAgentConfig({ server_address: 'a:1', join_token_file: file }), /the join token file .* is empty/);
    assert.throws(() => compileAgentConfig({ server_address: 'a:1', join_token_file: path.join(t.dir, 'gone') }), /cannot read the join token file .*gone \(ENOENT\)/);
    // The token itself where its file's path goes: the answer says so without repeating it.
    const token = '0123456789abcdef0123456789abcdef01234567';
    assert.throws(
      () => compileAgentConfig({ server_address: 'a:1', join_token_file: token }),
      (err: Error) => /takes the path of a file holding the join token.*looks like a token itself/.test(err.message) && !err.message.includes(token.slice(0, 12)),
    );
    assert.throws(
      () => compileAgentConfig({ server_address: 'a:1', join_token_file: `${token}\r\n` }),
      (err: Error) => /looks like a token itself/.test(err.message) && !err.message.includes(token.slice(0, 12)),
    );
  } finally {
    t.cleanup();
  }
});

test("join_token_file holding all token generate printed gives its Token: line's value; a file of anything else but one token is refused without showing it", () => {
  const t = tempDir('meshid-agent-token-file-output-');
  try {
    const file = path.join(t.dir, 'token');
    const token = '0123456789abcdef0123456789abcdef01234567';
    fs.writeFileSync(file, `Token: ${token}\nExpires at: 2026-12-02T05:00:00.000Z\nDatacenter: east\n`, { mode: 0o600 });
    assert.equal(compileAgentConfig({ server_address: 'a:1', join_token_file: file }).joinToken, token);
    const other = 'fedcba9876543210fedcba9876543210fedcba98';
    for (const text of [`${token}\n${other}\n`, `Token: ${token}\nToken: ${other}\n`, `export JOIN_TOKEN=${token}\n`, `${token} ${other}`]) {
      fs.writeFileSync(file, text);
      assert.throws(
        () => compileAgentConfig({ server_address: 'a:1', join_token_file: file }),
        (err: Error) =>
          isMeshidError(err, 'invalid_argument') &&
          err.message === `the join token file ${file} holds more than a join token (what it holds is not shown, as it may hold one): it must hold the join token alone, as \`meshid-server token generate\` prints it after "Token: ", or that command's whole output` &&
          !err.message.includes(token.slice(0, 12)) && !err.message.includes(other.slice(0, 12)),
        JSON.stringify(text),
      );
    }
  } finally {
    t.cleanup();
  }
});

test("jwt_svid_cache_max_size is SPIRE's name for jwt_svid_cache_size; both at once are refused", () => {
  assert.equal(compileAgentConfig({ server_address: 'a:1', jwt_svid_cache_max_size: 7 }).jwtSvidCacheSize, 7);
  assert.throws(() => compileAgentConfig({ server_address: 'a:1', jwt_svid_cache_max_size: 0 }), /jwt_svid_cache_max_size must be a positive integer/);
  assert.throws(() => compileAgentConfig({ server_address: 'a:1', jwt_svid_cache_size: 5, jwt_svid_cache_max_size: 7 }), /one setting: keep one of them/);
});

test('disable_workload_api and disable_sds_api (config keys, flags, spire-agent spellings) turn one API off; both off is refused', () => {
  const both = compileAgentConfig({ server_address: 'a:1' });
  assert.deepEqual([both.servesWorkloadApi, both.servesSds], [true, true]);
  const sdsOnly = compileAgentConfig(rawConfigFrom(['--server-address', 'a:1', '-disableWorkloadAPI']).raw);
  assert.deepEqual([sdsOnly.servesWorkloadApi, sdsOnly.servesSds], [false, true]);
  withConfig({ server_address: 'a:1', disable_sds_api: true }, (file) => {
    const c = compileAgentConfig(readAgentConfigFile(file));
    assert.deepEqual([c.servesWorkloadApi, c.servesSds], [true, false]);
  });
  assert.throws(() => compileAgentConfig(rawConfigFrom(['--server-address', 'a:1', '--disable-workload-api', '--disable-sds-api']).raw), /would serve nothing: leave one of them off/);
});

test('a socket path longer than a Unix socket takes is refused when the config is compiled, naming the setting: validate refuses what run would', () => {
  // 107 bytes is the most a path may have (Envoy and gRPC C-core clients need sun_path's NUL).
  const at = (bytes: number): string => `/${'s'.repeat(bytes - 1)}`;
  assert.equal(compileAgentConfig({ server_address: 'a:1', socket_path: at(107) }).socketPath, at(107));
  assert.throws(
    () => compileAgentConfig({ server_address: 'a:1', socket_path: at(108) }),
    /^MeshidError: --socket-path, socket_path: \/s+ is 108 bytes long, more than the 107 a Unix socket path may have/,
  );
  assert.throws(() => compileAgentConfig({ server_address: 'a:1', socket_path: `unix://${at(120)}` }), /--socket-path, socket_path: .* is 120 bytes long/);
});

test('the trust domain is held to the rule the server issues under: one the server refuses is refused here too', () => {
  for (const td of ['example.org.', '.example.org', 'a..b']) {
    assert.throws(() => compileAgentConfig({ server_address: 'a:1', trust_domain: td }), /has an empty label .*cannot parse a certificate naming it/, td);
    assert.throws(() => compileServerConfig({ trust_domain: td }), /has an empty label/, td);
  }
  assert.equal(compileAgentConfig({ server_address: 'a:1', trust_domain: 'spiffe://example.org' }).trustDomain, 'example.org');
});

test('the count settings have a maximum, refused naming the setting and the maximum (jwt_svid_cache_size: 1e15 passed before), and the maximum itself is taken', () => {
  const cases = [
    ['jwt_svid_cache_size', 1_000_000, 'jwtSvidCacheSize'],
    ['jwt_svid_cache_max_size', 1_000_000, 'jwtSvidCacheSize'],
    ['max_connections_per_uid', 1_048_576, 'maxConnectionsPerUid'],
    ['max_calls_per_uid', 1_000_000, 'maxCallsPerUid'],
  ] as const;
  for (const [key, max, field] of cases) {
    for (const over of [max + 1, 1e15]) {
      assert.throws(
        () => compileAgentConfig({ server_address: 'a:1', [key]: over }),
        (err: unknown) => isMeshidError(err, 'invalid_argument') && err.message === `${key} (${over}) is more than it may be (at most ${max}): lower it`,
        `${key}: ${over}`,
      );
    }
    assert.equal(compileAgentConfig({ server_address: 'a:1', [key]: max })[field], max);
  }
});
