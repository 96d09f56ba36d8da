/**
 * `meshid-server validate` and `meshid-agent validate`: what `run` would refuse is refused without starting anything,
 * with the same message; what it would accept is summarised.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { validateServerCommand } from '../../../src/server/cli/validate.js';
import { validateAgentCommand } from '../../../src/agent/cli/validate.js';
import { serverConfigFrom } from '../../../src/server/cli/run-config.js';
import { agentConfigFrom } from '../../../src/agent/cli/run-config.js';
import { opensslCa, opensslWebLeaf } from '../../support/openssl.js';
import { tempDir } from '../../support/server-kit.js';
import { captureIo } from './capture-io.js';
import { namingFlags } from '../../../src/common/cli/flag-origin.js';
import { invalidArgument, MeshidError } from '../../../src/common/errors.js';
import { MeshidAgent } from '../../../src/agent/agent.js';
import { silentLogger } from '../../../src/common/log.js';
import { errorLine } from '../../../src/common/cli/output.js';

async function run(command: typeof validateServerCommand, argv: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; out: string; err: string }> {
  const io = captureIo(env);
  const code = await command(argv, io);
  return { code, out: io.out(), err: io.err() };
}

test('server validate: a good configuration is summarised; a TTL conflict or unusable upstream CA files fail with what to change, a short-lived one warns', async (t) => {
  const { dir, cleanup } = tempDir('meshid-validate-');
  t.after(cleanup);
  const ok = await run(validateServerCommand, ['--trust-domain', 'example.org', '--datacenter', 'east', '--datacenter', 'west']);
  assert.deepEqual([ok.code, ok.err], [0, '']);
  assert.match(ok.out, /^Configuration is valid: trust domain example\.org, datacenters east, west; X\.509-SVIDs 1d/);
  assert.doesNotMatch(ok.out, /bundle endpoint|federates/);

  const configFile = path.join(dir, 'federating.json');
  fs.writeFileSync(configFile, JSON.stringify({
    trust_domain: 'example.org',
    federates_with: { 'partner.org': { bundle_endpoint_url: 'https://partner.example:8443', bundle_endpoint_profile: 'https_web' } },
  }));
  const federating = await run(validateServerCommand, ['--config', configFile, '--bundle-endpoint-address', '0.0.0.0:8443']);
  assert.deepEqual([federating.code, federating.err], [0, '']);
  assert.match(federating.out, /; bundle endpoint on 0\.0\.0\.0:8443 \(https_spiffe\); federates with partner\.org \(https_web\)\.\n$/);

  // https_web serving: the files must load and belong together, and the two flags come as a pair with an address.
  const webCa = opensslCa(dir, 'Web CA');
  const leaf = opensslWebLeaf(dir, webCa, 'bundle-endpoint');
  const serving = (cert: string, key: string, address = ['--bundle-endpoint-address', '0.0.0.0:8443']): string[] =>
    ['--trust-domain', 'example.org', ...address, '--bundle-endpoint-cert-file', cert, '--bundle-endpoint-key-file', key];
  const web = await run(validateServerCommand, serving(leaf.cert, leaf.key));
  assert.deepEqual([web.code, web.err], [0, '']);
  assert.match(web.out, /; bundle endpoint on 0\.0\.0\.0:8443 \(https_web\)\.\n$/);
  const wrongKey = await run(validateServerCommand, serving(leaf.cert, webCa.key));
  assert.equal(wrongKey.code, 1);
  assert.match(wrongKey.err, /^Error: InvalidArgument: the bundle endpoint key .*Web CA\.key is not the key of the first certificate in .*bundle-endpoint\.pem\n$/);
  const noAddress = await run(validateServerCommand, serving(leaf.cert, leaf.key, []));
  assert.match(noAddress.err, /^Error: InvalidArgument: --bundle-endpoint-cert-file serves the bundle endpoint under a web PKI certificate: give --bundle-endpoint-address too/);
  const noKey = await run(validateServerCommand, ['--trust-domain', 'example.org', '--bundle-endpoint-address', '0.0.0.0:8443', '--bundle-endpoint-cert-file', leaf.cert]);
  assert.match(noKey.err, /^Error: InvalidArgument: --bundle-endpoint-cert-file and --bundle-endpoint-key-file must be given together/);

  const ttl = await run(validateServerCommand, ['--trust-domain', 'example.org', '--intermediate-ttl', '1h']);
  assert.deepEqual([ttl.code, ttl.out], [1, '']);
  assert.match(ttl.err, /^Error: InvalidArgument: intermediate_ttl \(1h\) cannot cover a full X\.509-SVID lifetime/);

  const shortLived = opensslCa(dir, 'Short CA', { days: 10 });
  const other = opensslCa(dir, 'Other CA');
  const upstream = (cert: string, key: string): string[] => ['--trust-domain', 'example.org', '--upstream-ca-cert', cert, '--upstream-ca-key', key];
  // run refuses this only when it makes a new root from the files; a server already on it restarts.
  const expiring = await run(validateServerCommand, upstream(shortLived.cert, shortLived.key));
  assert.equal(expiring.code, 0, expiring.err);
  assert.match(expiring.err, /^Warning: .*expires .*too soon to cover two intermediate lifetimes/);
  assert.match(expiring.out, /^Configuration is valid/);
  const mismatched = await run(validateServerCommand, upstream(other.cert, shortLived.key));
  assert.equal(mismatched.code, 1);
  assert.match(mismatched.err, /^Error: InvalidArgument: .*key/);
  const good = await run(validateServerCommand, upstream(other.cert, other.key));
  assert.equal(good.code, 0, good.err);
  assert.match(good.out, new RegExp(`upstream CA ${other.cert.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\.\\n$`));
});

test('agent validate: the trust bundle must be readable CA certificates of the trust domain the flags name', async (t) => {
  const { dir, cleanup } = tempDir('meshid-validate-agent-');
  t.after(cleanup);
  const noServer = await run(validateAgentCommand, []);
  assert.deepEqual([noServer.code, noServer.out], [1, '']);
  assert.match(noServer.err, /--server-address host:port/);
  const badLevel = await run(validateAgentCommand, ['--server-address', 'meshid:8081'], { MESHID_LOG_LEVEL: 'bogus' });
  assert.equal(badLevel.code, 1, 'run refuses it from the environment, so validate does');
  assert.match(badLevel.err, /MESHID_LOG_LEVEL "bogus"/);

  const corporate = opensslCa(dir, 'Corporate Root');
  const base = ['--server-address', 'meshid:8081', '--trust-bundle', corporate.cert];
  const nameless = await run(validateAgentCommand, base);
  assert.equal(nameless.code, 1);
  assert.match(nameless.err, /carry no spiffe:\/\/ URI SAN: pass --trust-domain/);
  const named = await run(validateAgentCommand, [...base, '--trust-domain', 'example.org', '--socket-path', path.join(dir, 'api.sock')]);
  assert.equal(named.code, 0, named.err);
  assert.equal(named.out, `Configuration is valid: server meshid:8081, trust domain example.org, socket ${path.join(dir, 'api.sock')}, data dir ${path.resolve('.meshid/agent')}.\n`);

  // Neither a bundle nor --trust-domain: valid for an agent that attested before, which validate does not look for.
  const bare = await run(validateAgentCommand, ['--server-address', 'meshid:8081', '--data-dir', dir]);
  assert.equal(bare.code, 0, bare.err);
  assert.match(bare.out, /, trust domain \(from the data dir, if the agent attested before; a first start needs --trust-bundle\), /);

  fs.writeFileSync(path.join(dir, 'garbage.pem'), 'not a certificate');
  const garbage = await run(validateAgentCommand, ['--server-address', 'meshid:8081', '--trust-bundle', path.join(dir, 'garbage.pem')]);
  assert.equal(garbage.code, 1);
  assert.match(garbage.err, /garbage\.pem/);
  const missing = await run(validateAgentCommand, ['--server-address', 'meshid:8081', '--trust-bundle', path.join(dir, 'absent.pem')]);
  assert.match(missing.err, /cannot read the trust bundle .*absent\.pem: no such file \(ENOENT\)/);
});

test('agent validate: --socket-path (socket_path) takes the unix:///path URI SPIFFE_ENDPOINT_SOCKET holds, not as a relative path named "unix:"', async (t) => {
  const { dir, cleanup } = tempDir('meshid-validate-agent-socket-');
  t.after(cleanup);
  const socket = path.join(dir, 'public', 'api.sock');
  const uri = await run(validateAgentCommand, ['--server-address', 'meshid:8081', '--socket-path', `unix://${socket}`]);
  assert.deepEqual([uri.code, uri.err], [0, '']);
  assert.match(uri.out, new RegExp(`, socket ${socket.replace(/[.]/g, '\\.')}, `));
  const configFile = path.join(dir, 'agent.json');
  fs.writeFileSync(configFile, JSON.stringify({ server_address: 'meshid:8081', socket_path: `unix:${socket}` }));
  const fromFile = await run(validateAgentCommand, ['--config', configFile]);
  assert.deepEqual([fromFile.code, fromFile.err], [0, '']);
  assert.match(fromFile.out, new RegExp(`, socket ${socket.replace(/[.]/g, '\\.')}, `));
  const relative = await run(validateAgentCommand, ['--server-address', 'meshid:8081', '--socket-path', 'unix:api.sock']);
  assert.equal(relative.code, 1);
  assert.equal(relative.err, 'Error: InvalidArgument: --socket-path, socket_path value "unix:api.sock" must name an absolute path (unix:///path); a relative unix: URI is opaque\n');
});

test("agent validate: spire-agent's -serverPort, -trustBundleUrl and -expandEnv are answered with the meshid way, not as unknown flags", async () => {
  const port = await run(validateAgentCommand, ['-serverAddress', 'meshid-server', '-serverPort', '8081']);
  assert.equal(port.code, 1);
  assert.equal(port.err, 'Error: InvalidArgument: flag -serverPort is not supported by meshid: give the port in --server-address (-serverAddress), as host:port, e.g. meshid-server:8081\n');
  const url = await run(validateAgentCommand, ['-serverAddress', 'meshid-server:8081', '-trustBundleUrl', 'https://bundle.example/']);
  assert.equal(url.code, 1);
  assert.match(url.err, /^Error: InvalidArgument: flag -trustBundleUrl is not supported by meshid: save the bundle first \(meshid-server bundle show > bundle\.pem/);
  const expand = await run(validateAgentCommand, ['-serverAddress', 'meshid-server:8081', '-expandEnv']);
  assert.match(expand.err, /^Error: InvalidArgument: flag -expandEnv is not supported by meshid: config files are read as written/);
});

test('agent validate: --datacenter is refused saying that the join token decides the datacenter, not as an unknown flag', async () => {
  const refused = await run(validateAgentCommand, ['--server-address', 'meshid-server:8081', '--datacenter', 'west']);
  assert.equal(refused.code, 1);
  assert.equal(
    refused.err,
    "Error: InvalidArgument: flag --datacenter is not supported by meshid: the join token decides the agent's datacenter: generate it for that datacenter (`meshid-server token generate --datacenter <dc>`) and remove the setting\n",
  );
});

test("agent validate: spire-agent's -trustBundleFormat, -logFile and -logFormat are answered with what to do, as their config keys are", async () => {
  const format = await run(validateAgentCommand, ['-serverAddress', 'meshid-server:8081', '-trustBundle', 'bundle.pem', '-trustBundleFormat', 'pem']);
  assert.equal(format.code, 1);
  assert.match(format.err, /^Error: InvalidArgument: flag -trustBundleFormat is not supported by meshid: --trust-bundle takes PEM certificates/);
  const file = await run(validateAgentCommand, ['-serverAddress', 'meshid-server:8081', '-logFile', '/var/log/agent.log']);
  assert.match(file.err, /^Error: InvalidArgument: flag -logFile is not supported by meshid: the agent logs to stderr/);
  const logFormat = await run(validateAgentCommand, ['-serverAddress', 'meshid-server:8081', '-logFormat', 'json']);
  assert.match(logFormat.err, /^Error: InvalidArgument: flag -logFormat is not supported by meshid: the agent writes JSON lines/);
  const retry = await run(validateAgentCommand, ['-serverAddress', 'meshid-server:8081', '-retryBootstrap']);
  assert.match(retry.err, /^Error: InvalidArgument: flag -retryBootstrap is not supported by meshid: the agent retries its first attestation/);
  const source = await run(validateAgentCommand, ['-serverAddress', 'meshid-server:8081', '-logSourceLocation']);
  assert.match(source.err, /^Error: InvalidArgument: flag -logSourceLocation is not supported by meshid: log lines name their subsystem/);
});

test("server validate: spire-server's -logFormat is answered with what to do, as its config key is", async () => {
  const r = await run(validateServerCommand, ['-trustDomain', 'example.org', '-logFormat', 'text']);
  assert.equal(r.code, 1);
  assert.match(r.err, /^Error: InvalidArgument: flag -logFormat is not supported by meshid: the server writes JSON lines/);
  const source = await run(validateServerCommand, ['-trustDomain', 'example.org', '-logSourceLocation']);
  assert.match(source.err, /^Error: InvalidArgument: flag -logSourceLocation is not supported by meshid: log lines name their subsystem/);
});

test("server validate: spire-server's -serverPort, -expandEnv and -logFile are answered with the meshid way, not as unknown flags", async () => {
  const port = await run(validateServerCommand, ['-trustDomain', 'example.org', '-bindAddress', '0.0.0.0', '-serverPort', '8081']);
  assert.equal(port.code, 1);
  assert.equal(port.err, 'Error: InvalidArgument: flag -serverPort is not supported by meshid: give the port in --bind-address (-bindAddress), as host:port, e.g. 0.0.0.0:8081\n');
  const expand = await run(validateServerCommand, ['-trustDomain', 'example.org', '-expandEnv']);
  assert.match(expand.err, /^Error: InvalidArgument: flag -expandEnv is not supported by meshid: config files are read as written/);
  const logFile = await run(validateServerCommand, ['-trustDomain', 'example.org', '-logFile', '/var/log/spire-server.log']);
  assert.match(logFile.err, /^Error: InvalidArgument: flag -logFile is not supported by meshid: the server logs to stderr/);
});

test('a config file saved with a UTF-8 byte order mark (as some Windows editors save) is read like one without', async (t) => {
  const { dir, cleanup } = tempDir('meshid-validate-bom-');
  t.after(cleanup);
  const configFile = path.join(dir, 'server.json');
  fs.writeFileSync(configFile, '\uFEFF' + JSON.stringify({ trust_domain: 'example.org', datacenters: ['east'] }));
  const r = await run(validateServerCommand, ['--config', configFile]);
  assert.deepEqual([r.code, r.err], [0, '']);
  assert.match(r.out, /^Configuration is valid: trust domain example\.org, datacenters east;/);
});

/** A server and an agent config file, in a temp dir `prefix…` removed after the test, with these log_level values. */
function configsWithLogLevel(t: TestContext, prefix: string, serverLevel: string, agentLevel: string): { serverFile: string; agentFile: string } {
  const { dir, cleanup } = tempDir(prefix);
  t.after(cleanup);
  const serverFile = path.join(dir, 'server.json');
  fs.writeFileSync(serverFile, JSON.stringify({ trust_domain: 'example.org', log_level: serverLevel }));
  const agentFile = path.join(dir, 'agent.json');
  fs.writeFileSync(agentFile, JSON.stringify({ server_address: 'meshid:8081', log_level: agentLevel }));
  return { serverFile, agentFile };
}

test('log_level is taken in any case, as SPIRE configs write it ("DEBUG"), from the file, the environment or the flag; an unknown level is still refused', async (t) => {
  const { serverFile, agentFile } = configsWithLogLevel(t, 'meshid-validate-level-', 'DEBUG', 'Warn');
  assert.equal(serverConfigFrom(['--config', serverFile], {})!.logLevel, 'debug');
  assert.equal(serverConfigFrom(['--trust-domain', 'example.org'], { MESHID_LOG_LEVEL: 'ERROR' })!.logLevel, 'error');
  // The environment is the default's default: the config file's log_level and the flag each win over it.
  assert.equal(serverConfigFrom(['--config', serverFile], { MESHID_LOG_LEVEL: 'ERROR' })!.logLevel, 'debug');
  assert.equal(serverConfigFrom(['--trust-domain', 'example.org', '--log-level', 'warn'], { MESHID_LOG_LEVEL: 'ERROR' })!.logLevel, 'warn');
  assert.equal(serverConfigFrom(['--trust-domain', 'example.org', '-logLevel', 'TRACE'], {})!.logLevel, 'trace');
  assert.equal(agentConfigFrom(['--config', agentFile], {})!.logLevel, 'warn');
  assert.equal(agentConfigFrom(['--server-address', 'meshid:8081', '--log-level', 'INFO'], {})!.logLevel, 'info');
  const ok = await run(validateServerCommand, ['--config', serverFile]);
  assert.deepEqual([ok.code, ok.err], [0, '']);

  fs.writeFileSync(serverFile, JSON.stringify({ trust_domain: 'example.org', log_level: 'VERBOSE' }));
  const unknown = await run(validateServerCommand, ['--config', serverFile]);
  assert.deepEqual([unknown.code, unknown.err], [1, 'Error: InvalidArgument: log_level "VERBOSE" is not one of trace, debug, info, warn, error, fatal, warning, panic\n']);
  const unknownFlag = await run(validateAgentCommand, ['--server-address', 'meshid:8081', '--log-level', 'LOUD']);
  assert.deepEqual([unknownFlag.code, unknownFlag.err], [1, 'Error: InvalidArgument: flag --log-level must be one of trace, debug, info, warn, error, fatal, warning, panic, got "LOUD"\n']);
});

test("log_level takes logrus's names as SPIRE does, from the file, the flag and the environment of both daemons: warning is warn, panic is pino's nearest, fatal", async (t) => {
  const { serverFile, agentFile } = configsWithLogLevel(t, 'meshid-validate-logrus-level-', 'WARNING', 'warning');
  const server = ['--trust-domain', 'example.org'];
  const agent = ['--server-address', 'meshid:8081'];
  // The config file.
  assert.equal(serverConfigFrom(['--config', serverFile], {})!.logLevel, 'warn');
  assert.equal(agentConfigFrom(['--config', agentFile], {})!.logLevel, 'warn');
  // The flag, in SPIRE's spelling too.
  assert.equal(serverConfigFrom([...server, '--log-level', 'warning'], {})!.logLevel, 'warn');
  assert.equal(serverConfigFrom([...server, '-logLevel', 'Panic'], {})!.logLevel, 'fatal');
  assert.equal(agentConfigFrom([...agent, '--log-level', 'WARNING'], {})!.logLevel, 'warn');
  assert.equal(agentConfigFrom([...agent, '-logLevel', 'fatal'], {})!.logLevel, 'fatal');
  // The environment.
  assert.equal(serverConfigFrom(server, { MESHID_LOG_LEVEL: 'warning' })!.logLevel, 'warn');
  assert.equal(serverConfigFrom(server, { MESHID_LOG_LEVEL: 'FATAL' })!.logLevel, 'fatal');
  assert.equal(agentConfigFrom(agent, { MESHID_LOG_LEVEL: 'Warning' })!.logLevel, 'warn');
  assert.equal(agentConfigFrom(agent, { MESHID_LOG_LEVEL: 'panic' })!.logLevel, 'fatal');
  // validate, which runs what run runs, accepts them as well.
  assert.deepEqual((await run(validateServerCommand, ['--config', serverFile])).code, 0);
  assert.deepEqual((await run(validateAgentCommand, [...agent, '--log-level', 'panic'])).code, 0);
});

test('a config error about a value given as a flag names the flag too, so an operator without a config file knows what to change; one from the file does not', async (t) => {
  const { dir, cleanup } = tempDir('meshid-validate-flag-origin-');
  t.after(cleanup);
  const fromFlag = await run(validateServerCommand, ['--trust-domain', 'example.org', '--join-token-ttl', '8d']);
  assert.deepEqual([fromFlag.code, fromFlag.err], [
    1,
    'Error: InvalidArgument: join_token_ttl (8d) is longer than a join token may live (7d): lower it to 7d or less (join_token_ttl was given as --join-token-ttl)\n',
  ]);
  const twoFlags = await run(validateServerCommand, ['--trust-domain', 'example.org', '--default-jwt-svid-ttl', '10m', '--max-jwt-svid-ttl', '5m']);
  assert.equal(twoFlags.code, 1);
  assert.match(twoFlags.err, /\(max_jwt_svid_ttl was given as --max-jwt-svid-ttl, default_jwt_svid_ttl was given as --default-jwt-svid-ttl\)\n$/);
  const address = await run(validateServerCommand, ['--trust-domain', 'example.org', '--bind-address', 'nowhere']);
  assert.match(address.err, /^Error: InvalidArgument: bind_address "nowhere" is not HOST:PORT: there is no port \(e\.g\. 0\.0\.0\.0:8081 or \[::\]:8081\) \(bind_address was given as --bind-address\)\n$/);
  // A message that names the flag itself gets nothing added.
  const fromFlags = new Map([['socket_path', 'socket-path']]);
  assert.throws(() => namingFlags(fromFlags, () => { throw invalidArgument('--socket-path, socket_path value "x" is bad'); }), /^MeshidError: --socket-path, socket_path value "x" is bad$/);

  const serverFile = path.join(dir, 'server.json');
  fs.writeFileSync(serverFile, JSON.stringify({ trust_domain: 'example.org', join_token_ttl: '8d' }));
  const fromFile = await run(validateServerCommand, ['--config', serverFile]);
  assert.deepEqual([fromFile.code, fromFile.err], [1, 'Error: InvalidArgument: join_token_ttl (8d) is longer than a join token may live (7d): lower it to 7d or less\n']);
});

test('validate refuses a config file key set to "" as a flag given "" is refused: a data_dir or socket_path of "" was the working directory', async (t) => {
  const { dir, cleanup } = tempDir('meshid-validate-empty-');
  t.after(cleanup);
  const serverFile = path.join(dir, 'server.json');
  for (const key of ['data_dir', 'admin_socket', 'bundle_endpoint_cert_file']) {
    fs.writeFileSync(serverFile, JSON.stringify({ trust_domain: 'example.org', bundle_endpoint_address: '127.0.0.1:8443', bundle_endpoint_key_file: 'k.pem', [key]: '' }));
    const r = await run(validateServerCommand, ['--config', serverFile]);
    assert.deepEqual([r.code, r.out], [1, ''], key);
    assert.equal(r.err, `Error: InvalidArgument: config file ${serverFile}: "${key}" is empty: give it a value, or leave the key out for its default\n`);
  }
  const agentFile = path.join(dir, 'agent.json');
  for (const [key, value] of [['data_dir', ''], ['socket_path', ' '], ['trust_bundle_path', '']] as const) {
    fs.writeFileSync(agentFile, JSON.stringify({ server_address: 'meshid-server:8081', [key]: value }));
    const r = await run(validateAgentCommand, ['--config', agentFile]);
    assert.deepEqual([r.code, r.out], [1, ''], key);
    assert.equal(r.err, `Error: InvalidArgument: config file ${agentFile}: "${key}" is empty: give it a value, or leave the key out for its default\n`);
  }
  // In the sds block the setting was named by its TypeScript name (sds.defaultSvidName), which no file holds.
  fs.writeFileSync(agentFile, JSON.stringify({ server_address: 'meshid-server:8081', sds: { default_svid_name: '' } }));
  const sds = await run(validateAgentCommand, ['--config', agentFile]);
  assert.equal(sds.err, `Error: InvalidArgument: config file ${agentFile}: sds: "default_svid_name" is empty: give it a value, or leave the key out for its default\n`);
});

test('validate accepts a config file key set to "" that a flag gives a value, as run did before empty keys were refused: the flag wins over the file', async (t) => {
  const { dir, cleanup } = tempDir('meshid-validate-empty-flag-');
  t.after(cleanup);
  const serverFile = path.join(dir, 'server.json');
  fs.writeFileSync(serverFile, JSON.stringify({ trust_domain: '', data_dir: '' }));
  const server = await run(validateServerCommand, ['--config', serverFile, '--trust-domain', 'example.org', '--data-dir', path.join(dir, 'server')]);
  assert.deepEqual([server.code, server.err], [0, '']);
  // A template that leaves the address and the token to the command line (a join token is better kept out of files).
  const agentFile = path.join(dir, 'agent.json');
  fs.writeFileSync(agentFile, JSON.stringify({ server_address: '', join_token: '', data_dir: path.join(dir, 'agent') }));
  const agent = await run(validateAgentCommand, ['--config', agentFile, '--server-address', 'meshid-server:8081', '--join-token', 'a'.repeat(40)]);
  assert.deepEqual([agent.code, agent.err], [0, '']);
  // Not given by a flag, the "" is still refused, naming the key.
  const alone = await run(validateAgentCommand, ['--config', agentFile, '--server-address', 'meshid-server:8081']);
  assert.equal(alone.err, `Error: InvalidArgument: config file ${agentFile}: "join_token" is empty: give it a value, or leave the key out for its default\n`);
});

test('validate refuses a config file that is not UTF-8, naming the line, instead of reading a Latin-1 path as another path', async (t) => {
  const { dir, cleanup } = tempDir('meshid-validate-encoding-');
  t.after(cleanup);
  const latin1 = path.join(dir, 'latin1.json');
  // "café" in Latin-1: read leniently, the é became U+FFFD and data_dir named a directory nobody wrote.
  fs.writeFileSync(latin1, Buffer.concat([Buffer.from('{"trust_domain": "example.org",\n "data_dir": "/srv/caf'), Buffer.from([0xe9]), Buffer.from('"}')]));
  const server = await run(validateServerCommand, ['--config', latin1]);
  assert.deepEqual([server.code, server.out], [1, '']);
  assert.equal(server.err, `Error: InvalidArgument: config file ${latin1}, line 2: not UTF-8 (a byte of another encoding, such as Latin-1): save the file as UTF-8\n`);
  const utf16 = path.join(dir, 'utf16.json');
  fs.writeFileSync(utf16, Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from('{"server_address": "meshid-server:8081"}', 'utf16le')]));
  const agent = await run(validateAgentCommand, ['--config', utf16]);
  assert.deepEqual([agent.code, agent.err], [1, `Error: InvalidArgument: config file ${utf16} is UTF-16: save it as UTF-8\n`]);
  // UTF-8 with its byte order mark is UTF-8.
  const bom = path.join(dir, 'bom.json');
  fs.writeFileSync(bom, Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('{"server_address": "meshid-server:8081", "data_dir": "/srv/café"}')]));
  const ok = await run(validateAgentCommand, ['--config', bom]);
  assert.deepEqual([ok.code, ok.err], [0, '']);
  assert.match(ok.out, /data dir \/srv\/café\.\n$/);
});

test('agent validate: a trust bundle of another trust domain than --trust-domain is refused with the line a real start prints', async (t) => {
  const { dir, cleanup } = tempDir('meshid-validate-agent-td-');
  t.after(cleanup);
  const other = opensslCa(dir, 'Other TD', { extensions: ['basicConstraints=critical,CA:TRUE', 'keyUsage=critical,keyCertSign,cRLSign', 'subjectAltName=URI:spiffe://other.org'] });
  const argv = ['--server-address', 'meshid:8081', '--trust-bundle', other.cert, '--trust-domain', 'example.org', '--join-token', 'x', '--data-dir', path.join(dir, 'data'), '--socket-path', path.join(dir, 'api.sock')];
  const validated = await run(validateAgentCommand, argv);
  assert.deepEqual([validated.code, validated.out], [1, '']);
  // The same configuration, started for real: it stops before dialling anything.
  const started = await MeshidAgent.start({ config: agentConfigFrom(argv, {})!, log: silentLogger() }).then(
    async (agent) => { await agent.stop(); return undefined; },
    (err: unknown) => err,
  );
  assert.ok(started instanceof MeshidError, String(started));
  assert.equal(validated.err, `${errorLine(started)}\n`);
  assert.match(validated.err, /^Error: FailedPrecondition: --trust-domain names trust domain "example\.org" but the trust bundle names "other\.org": /);
});

test('agent validate: a trust domain set in the config file is named as the file\'s trust_domain, not as --trust-domain, when the trust bundle disagrees or when it is refused', async (t) => {
  const { dir, cleanup } = tempDir('meshid-validate-agent-td-file-');
  t.after(cleanup);
  const other = opensslCa(dir, 'Other TD', { extensions: ['basicConstraints=critical,CA:TRUE', 'keyUsage=critical,keyCertSign,cRLSign', 'subjectAltName=URI:spiffe://other.org'] });
  const file = path.join(dir, 'agent.json');
  const write = (td: string): void =>
    fs.writeFileSync(file, JSON.stringify({ server_address: 'meshid:8081', trust_bundle_path: other.cert, trust_domain: td, data_dir: path.join(dir, 'data'), socket_path: path.join(dir, 'api.sock') }));
  write('example.org');
  const mismatch = await run(validateAgentCommand, ['--config', file]);
  assert.deepEqual([mismatch.code, mismatch.out], [1, '']);
  assert.match(mismatch.err, new RegExp(`^Error: FailedPrecondition: trust_domain in ${file.replace(/[.]/g, '\\.')} names trust domain "example\\.org" but the trust bundle names "other\\.org": `));
  // The flag still wins over the file, and is named when it is the one that disagrees.
  const flagged = await run(validateAgentCommand, ['--config', file, '--trust-domain', 'third.org']);
  assert.match(flagged.err, /^Error: FailedPrecondition: --trust-domain names trust domain "third\.org" but the trust bundle names "other\.org": /);
  write('example..org');
  const emptyLabel = await run(validateAgentCommand, ['--config', file]);
  assert.match(emptyLabel.err, new RegExp(`^Error: InvalidArgument: trust_domain in ${file.replace(/[.]/g, '\\.')}: trust domain "example\\.\\.org" has an empty label `));
  const emptyLabelFlag = await run(validateAgentCommand, ['--config', file, '--trust-domain', '.example.org']);
  assert.match(emptyLabelFlag.err, /^Error: InvalidArgument: --trust-domain: trust domain "\.example\.org" has an empty label /);
  // A bundle of roots without a URI SAN, and no trust domain set: the file's user is sent to the file first.
  const corporate = opensslCa(dir, 'Corporate Root');
  fs.writeFileSync(file, JSON.stringify({ server_address: 'meshid:8081', trust_bundle_path: corporate.cert, data_dir: path.join(dir, 'data'), socket_path: path.join(dir, 'api.sock') }));
  const nameless = await run(validateAgentCommand, ['--config', file]);
  assert.equal(nameless.code, 1);
  assert.match(nameless.err, new RegExp(`carry no spiffe:// URI SAN: set trust_domain in ${file.replace(/[.]/g, '\\.')} \\(or pass --trust-domain\\)\n$`));
});

test('server validate: a refused trust domain names trust_domain, and --trust-domain when the flag gave it', async (t) => {
  const { dir, cleanup } = tempDir('meshid-validate-server-td-');
  t.after(cleanup);
  const file = path.join(dir, 'server.json');
  fs.writeFileSync(file, JSON.stringify({ trust_domain: 'example..org', data_dir: path.join(dir, 'data') }));
  const fromFile = await run(validateServerCommand, ['--config', file]);
  assert.equal(fromFile.code, 1);
  assert.match(fromFile.err, /^Error: InvalidArgument: trust_domain: trust domain "example\.\.org" has an empty label [^\n]*; use "example\.org"\n$/);
  const fromFlag = await run(validateServerCommand, ['--trust-domain', 'spiffe://a/b']);
  assert.match(fromFlag.err, /^Error: InvalidArgument: trust_domain: "spiffe:\/\/a\/b" is a SPIFFE ID with a path, not a trust domain \(trust_domain was given as --trust-domain\)\n$/);
});

test('validate names the line and column of a JSON fault V8 gives no position for (an unquoted value, a YAML file)', async (t) => {
  const { dir, cleanup } = tempDir('meshid-validate-json-');
  t.after(cleanup);
  const unquoted = path.join(dir, 'server.json');
  fs.writeFileSync(unquoted, '{\n  "trust_domain": "example.org",\n  "x": tru}\n');
  const server = await run(validateServerCommand, ['--config', unquoted]);
  assert.deepEqual([server.code, server.out], [1, '']);
  assert.equal(server.err, `Error: InvalidArgument: config file ${unquoted} is not valid JSON: it holds a value JSON does not allow there (a string without quotes, a trailing comma, a comment?) (line 3, column 11)\n`);
  const yaml = path.join(dir, 'agent.yaml');
  fs.writeFileSync(yaml, 'server_address: meshid-server:8081\n');
  const agent = await run(validateAgentCommand, ['--config', yaml]);
  assert.match(agent.err, /^Error: InvalidArgument: config file .*agent\.yaml is not valid JSON: .* \(line 1, column 1\)\n$/);
  // A fault V8 places itself keeps its own position, once.
  fs.writeFileSync(unquoted, '{\n  "trust_domain": "example.org",\n}\n');
  const trailing = await run(validateServerCommand, ['--config', unquoted]);
  assert.equal(trailing.err, `Error: InvalidArgument: config file ${unquoted} is not valid JSON: Expected double-quoted property name at line 3, column 1\n`);
});
