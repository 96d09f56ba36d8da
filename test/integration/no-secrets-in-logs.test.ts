/**
 * "Never log private keys or tokens", checked on a real session: a meshid-server and meshid-agent processes at trace
 * level (with grpc-js's own diagnostics on), driven through join-token attestation (a wrong, a reused, an expired and
 * a revoked token), config files holding a join token that are refused, entries, FetchX509SVID, FetchJWTSVID,
 * ValidateJWTSVID (valid, expired, signed by an unknown key, tampered, malformed), an SDS stream and a NACK, agent SVID
 * renewals, a ban, a server restart, and the CLI commands that mint, generate, back up and validate. The secrets the
 * test knows (every join token, every JWT fetched, minted or made, every private key in the data dirs, the backup and
 * the responses) must not appear in any byte a daemon writes, nor on the stderr of any CLI command, nor on the stdout
 * of those whose purpose is not to print them. Everything runs under umask 000: what holds a secret must still be
 * private to its owner.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { isMeshidError } from '../../src/common/errors.js';
import { signJwtSvid } from '../../src/common/jwt/jwt-svid.js';
import { Cluster, AGENT_MAIN, DATACENTER, restartServerProcess, startCluster, type AgentProcess } from '../support/cluster.js';
import { runNode, SERVER_MAIN, type CliResult } from '../support/server-process.js';
import { connectSds, dataSourceText, decodeSecrets, envoyNode, SotwClient } from '../support/sds-client.js';
import { until } from '../support/until.js';
import { parseLogLines } from '../support/log-lines.js';
import { jobFreeKeyPair } from '../support/job-free-key-pair.js';
import { tetheredDaemon } from '../support/tethered-daemon.js';

const WEB = 'spiffe://example.org/web';
const uid = process.getuid!();

/** A secret the test knows, and fragments of it any encoding in a log would show. */
interface Secret {
  what: string;
  needles: string[];
}

const secrets: Secret[] = [];
/** What the daemons wrote, by name (each server run, each agent). */
const daemonOutputs = new Map<string, () => string>();
/** Every CLI run: whether its stdout may hold secrets (its purpose is to print them). */
const cliRuns: Array<{ args: string[]; result: CliResult; printsSecrets: boolean }> = [];

let cluster: Cluster;
let configDir: string;
let agent: AgentProcess;

/**
 * Every 12-character run of `text`, 2 apart: a message quoting part of a secret (V8's JSON.parse quotes ten characters
 * around a fault) still holds one. 12 random characters match nothing else in a log by chance.
 */
function windows(text: string): string[] {
  const runs: string[] = [];
  for (let i = 0; i + 12 <= text.length; i += 2) runs.push(text.slice(i, i + 12));
  return runs;
}

function addToken(what: string, value: string): void {
  secrets.push({ what, needles: [value, ...windows(value)] });
}

function addJwt(what: string, token: string): void {
  // The whole token, and runs of its signature (the part that makes it a credential; header and claims are not secret).
  secrets.push({ what, needles: [token, ...windows(token.split('.')[2]!)] });
}

/** A private key: its PKCS#8 DER (base64, base64url, hex), its SEC1 form, and its scalar (a JWK's `d`). */
function addKey(what: string, key: crypto.KeyObject): void {
  const pkcs8 = key.export({ type: 'pkcs8', format: 'der' });
  const needles = [pkcs8.toString('base64').slice(48, 100), pkcs8.toString('base64url').slice(48, 100), pkcs8.toString('hex').slice(72, 140)];
  const jwk = key.export({ format: 'jwk' });
  if (typeof jwk.d === 'string') {
    const d = Buffer.from(jwk.d, 'base64url');
    needles.push(...windows(jwk.d), ...windows(d.toString('base64')), ...windows(d.toString('hex')));
  }
  if (key.asymmetricKeyType === 'ec') needles.push(key.export({ type: 'sec1', format: 'der' }).toString('base64').slice(12, 60));
  secrets.push({ what, needles });
}

/** Every private key in the files under `dir`: PEM blocks, and base64 DER in JSON fields (the agent's identity file). */
function addKeysUnder(dir: string): number {
  let found = 0;
  for (const file of filesUnder(dir)) {
    const text = fs.readFileSync(file, 'latin1');
    for (const m of text.matchAll(/-----BEGIN ([A-Z ]*)PRIVATE KEY-----[\s\S]*?-----END \1PRIVATE KEY-----/g)) {
      // A PEM inside a JSON string (the server SVID file's key_pem) has its line breaks escaped.
      addKey(`a private key in ${file}`, crypto.createPrivateKey(m[0].replaceAll('\\n', '\n')));
      found++;
    }
    for (const m of text.matchAll(/"(?:private_key|x509_svid_key|key)"\s*:\s*"([A-Za-z0-9+/]{80,}={0,2})"/g)) {
      let key: crypto.KeyObject;
      try {
        key = crypto.createPrivateKey({ key: Buffer.from(m[1]!, 'base64'), format: 'der', type: 'pkcs8' });
      } catch (err) {
        throw new Error(`${file}: ${m[0].slice(0, 40)}… is no PKCS#8 key`, { cause: err });
      }
      addKey(`a private key (DER) in ${file}`, key);
      found++;
    }
  }
  return found;
}

function filesUnder(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? filesUnder(p) : e.isFile() ? [p] : [];
  });
}

async function serverCli(args: string[], printsSecrets = false): Promise<CliResult> {
  const result = await runNode(SERVER_MAIN, [...args, '--admin-socket', cluster.server.adminSocket]);
  cliRuns.push({ args: ['meshid-server', ...args], result, printsSecrets });
  return result;
}

async function agentCli(args: string[], printsSecrets = false, asUid?: number): Promise<CliResult> {
  const result = asUid === undefined ? await runNode(AGENT_MAIN, args) : await runAs(asUid, args);
  cliRuns.push({ args: ['meshid-agent', ...args], result, printsSecrets });
  return result;
}

/** The agent CLI as another uid (the caller is root). */
function runAs(asUid: number, args: string[]): Promise<CliResult> {
  return runNode(AGENT_MAIN, args, {}, process.cwd(), { uid: asUid, gid: asUid });
}

/** `meshid-agent run` to its end (an agent that gives up, refused or misconfigured); its output is a daemon's. */
function agentRunToExit(name: string, args: string[]): Promise<number | null> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [AGENT_MAIN, 'run', ...args], tetheredDaemon({ ...process.env, ...TRACE }));
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    daemonOutputs.set(name, () => out);
    child.on('error', reject);
    // Bounded: an agent that serves instead of giving up (a regression) fails here, not at the runner's limit.
    const bound = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${name} did not exit within 60 s (killed):\n${out}`));
    }, 60_000);
    child.on('close', (code) => {
      clearTimeout(bound);
      resolve(code);
    });
  });
}

/** The most the daemons say: their own trace level, and grpc-js's diagnostics routed into their log. */
const TRACE = { MESHID_LOG_LEVEL: 'trace', GRPC_VERBOSITY: 'DEBUG', GRPC_TRACE: 'all' };

/** A JWT-SVID for WEB, signed by `key` under `kid`, with times relative to now (seconds). */
function craftJwt(key: crypto.KeyObject, kid: string, iatOffset: number, expOffset: number): string {
  const now = Math.floor(Date.now() / 1000);
  return signJwtSvid({ privateKey: key, kid, sub: WEB, aud: ['relying-party'], iat: now + iatOffset, exp: now + expOffset });
}

before(async () => {
  // Whatever the daemons and the CLIs create, they create under the loosest umask an operator could have.
  process.umask(0o000);
  configDir = fs.mkdtempSync(path.join(process.env['TMPDIR'] ?? '/tmp', 'meshid-no-secrets-config-'));
  // A short agent SVID: the agent renews it (a new key each time) during the session.
  const serverConfig = path.join(configDir, 'server.json');
  fs.writeFileSync(serverConfig, JSON.stringify({ agent_svid_ttl: '20s', default_x509_svid_ttl: '20s' }));
  cluster = await startCluster('meshid-no-secrets-', ['--config', serverConfig], TRACE);
});

after(async () => {
  await cluster?.cleanup();
  if (configDir !== undefined) fs.rmSync(configDir, { recursive: true, force: true });
});

test('a session at trace level writes no join token, JWT-SVID or private key to a log, and keeps secret files private', async () => {
  const firstServer = cluster.server.output!;
  daemonOutputs.set('meshid-server (first run)', firstServer);
  const adminSocket = cluster.server.adminSocket;

  // Join tokens: from the CLI (whose purpose is to print them) and the admin API.
  const generated = await serverCli(['token', 'generate', '--datacenter', DATACENTER], true);
  assert.equal(generated.code, 0, generated.err);
  const cliToken = /^Token: (\S+)$/m.exec(generated.out)![1]!;
  addToken('a join token from token generate', cliToken);
  const generatedJson = await serverCli(['token', 'generate', '--output', 'json'], true);
  const revokedToken = (JSON.parse(generatedJson.out) as { value: string }).value;
  addToken('a join token revoked before use', revokedToken);
  assert.equal((await serverCli(['token', 'revoke', '--token', revokedToken])).code, 0);
  assert.equal((await serverCli(['token', 'revoke', '--token', revokedToken])).code, 1, 'a revoked token is revoked once');
  const expiring = await cluster.admin.call('Tokens', 'GenerateJoinToken', { datacenter: DATACENTER, ttl: 1 });
  addToken('a join token that expired', expiring.token!);
  const wrongToken = crypto.randomBytes(20).toString('hex');
  addToken('a join token no server generated', wrongToken);

  await cluster.createEntry({ spiffeId: WEB, selectors: [`unix:uid:${uid}`], hint: 'web' });
  assert.equal((await serverCli(['entry', 'show'])).code, 0);

  // Config files holding the join token, refused: the refusals name the file and the key, never the value.
  const configs: Record<string, string> = {
    'unknown-key.json': JSON.stringify({ join_token: cliToken, no_such_key: 1 }),
    'syntax.json': `{"join_token": "${cliToken}",, }`,
    'unquoted.json': `{"agent": {"join_token": ${cliToken}}}`,
    'control-char.json': `{"join_token": "${cliToken}\n"}`,
    'duplicate.json': `{"join_token": "${cliToken}", "join_token": "${cliToken}"}`,
    'both.json': JSON.stringify({ join_token: cliToken, join_token_file: path.join(configDir, 'token'), server_address: cluster.server.address() }),
    'wrong-type.json': JSON.stringify({ join_token: [cliToken] }),
    'hcl.conf': `agent {\n  join_token = "${cliToken}"\n}\n`,
  };
  fs.writeFileSync(path.join(configDir, 'token'), `${cliToken}\n`);
  for (const [name, text] of Object.entries(configs)) {
    const file = path.join(configDir, name);
    fs.writeFileSync(file, text);
    assert.equal((await agentCli(['validate', '--config', file])).code, 1, name);
    assert.equal(await agentRunToExit(`meshid-agent run --config ${name}`, ['--config', file]), 1, name);
  }

  // Agents refused: a token no server made, a revoked one, an expired one.
  await until('the 1 s token to expire', () => (Date.now() > (expiring.expires_at! + 1) * 1000 ? true : undefined));
  for (const [name, token] of [['wrong', wrongToken], ['revoked', revokedToken], ['expired', expiring.token!]] as const) {
    const code = await agentRunToExit(`meshid-agent run (${name} token)`, [
      '--server-address', cluster.server.address(), '--trust-bundle', cluster.bundleFile, `--join-token=${token}`,
      '--socket-path', path.join(cluster.dir, `${name}-socket`, 'api.sock'), '--data-dir', path.join(cluster.dir, `${name}-data`),
    ]);
    assert.equal(code, 1, `an agent with the ${name} token gives up`);
  }

  // The agent: its token in its config file, run at trace level.
  const agentConfig = path.join(configDir, 'agent.json');
  fs.writeFileSync(agentConfig, JSON.stringify({ join_token: cliToken, log_level: 'trace' }));
  assert.equal((await agentCli(['validate', '--config', agentConfig, '--server-address', cluster.server.address()])).code, 0);
  agent = await cluster.startAgent({ extraArgs: ['--config', agentConfig], env: TRACE });
  daemonOutputs.set('meshid-agent', () => agent.output());
  // The token again, now spent, from another host.
  assert.equal(await agentRunToExit('meshid-agent run (reused token)', [
    '--server-address', cluster.server.address(), '--trust-bundle', cluster.bundleFile, `--join-token=${cliToken}`,
    '--socket-path', path.join(cluster.dir, 'reused-socket', 'api.sock'), '--data-dir', path.join(cluster.dir, 'reused-data'),
  ]), 1);

  // The Workload API.
  const workload = agent.client(10_000);
  try {
    const svids = await workload.fetchX509Svid();
    assert.equal(svids.svids[0]?.spiffe_id, WEB);
    for (const s of svids.svids) addKey(`the X509-SVID key of ${s.spiffe_id} (FetchX509SVID)`, crypto.createPrivateKey({ key: s.x509_svid_key!, format: 'der', type: 'pkcs8' }));
    const jwts = await workload.fetchJwtSvid(['relying-party']);
    const jwt = jwts.svids[0]!.svid!;
    addJwt('a JWT-SVID from FetchJWTSVID', jwt);
    assert.equal((await workload.validateJwtSvid('relying-party', jwt)).spiffeId, WEB);

    const jwtKeyFile = fs.readdirSync(path.join(cluster.dir, 'server', 'data', 'ca', 'keys')).find((f) => f.startsWith('jwt-'))!;
    const jwtKey = crypto.createPrivateKey(fs.readFileSync(path.join(cluster.dir, 'server', 'data', 'ca', 'keys', jwtKeyFile)));
    const kid = path.basename(jwtKeyFile, '.pem');
    const expired = craftJwt(jwtKey, kid, -600, -300);
    const stranger = jobFreeKeyPair('ec', { namedCurve: 'P-256' }).privateKey;
    const unknownKey = craftJwt(stranger, kid, -10, 300);
    const unknownKid = craftJwt(stranger, 'jwt-0000000000000000', -10, 300);
    const tampered = `${jwt.slice(0, -4)}${jwt.endsWith('AAAA') ? 'BBBB' : 'AAAA'}`;
    const [h, p] = jwt.split('.');
    const malformed = [`${h}.${p}`, `${h}.${p}.!!!`, `${h}x.${p}.${jwt.split('.')[2]}`, `${jwt}.${jwt}`, `${jwt.slice(0, 12)} ${jwt.slice(12)}`];
    addJwt('an expired JWT-SVID', expired);
    addJwt('a JWT-SVID signed by an unknown key', unknownKey);
    addJwt('a JWT-SVID with an unknown kid', unknownKid);
    addJwt('a tampered JWT-SVID', tampered);
    for (const bad of [expired, unknownKey, unknownKid, tampered, ...malformed]) {
      await assert.rejects(workload.validateJwtSvid('relying-party', bad), (err: unknown) => isMeshidError(err, 'invalid_argument'));
    }
    // The agent logs one refusal per rpc, code and uid a minute: as root, each refused token comes from a uid of its
    // own (`api validate jwt`, as a workload would run it), so every reason reaches the log.
    if (uid === 0) {
      const bads = [expired, unknownKey, unknownKid, tampered, ...malformed];
      for (const [i, bad] of bads.entries()) {
        const r = await agentCli(['api', 'validate', 'jwt', '--audience', 'relying-party', `--svid=${bad}`, '--socket-path', agent.socketPath], false, 61_000 + i);
        assert.equal(r.code, 1, r.err);
      }
      const reasons = new Set(parseLogLines(agent.output()).filter((l) => l.msg === 'Workload API call refused' && l['rpc'] === 'ValidateJWTSVID').map((l) => l['reason']));
      assert.ok(reasons.size >= 5, `the refusals' reasons are logged: ${[...reasons].join(' | ')}`);
    }
    await assert.rejects(
      workload.validateJwtSvid('another-audience', jwt),
      (err: unknown) => isMeshidError(err, 'invalid_argument') && /token audience does not include "another-audience"/.test(err.message),
    );
  } finally {
    workload.close();
  }

  // The agent's CLI, as a workload runs it (`api validate jwt --svid TOKEN` takes the token as spire-agent does).
  const socket = ['--socket-path', agent.socketPath];
  const fetchedJwt = await agentCli(['api', 'fetch', 'jwt', '--audience', 'relying-party', ...socket], true);
  assert.equal(fetchedJwt.code, 0, fetchedJwt.err);
  const cliJwt = /eyJ[\w-]+\.eyJ[\w-]+\.[\w-]+/.exec(fetchedJwt.out)![0];
  addJwt('a JWT-SVID from api fetch jwt', cliJwt);
  assert.equal((await agentCli(['api', 'validate', 'jwt', '--audience', 'relying-party', '--svid', cliJwt, ...socket])).code, 0);
  assert.equal((await agentCli(['api', 'validate', 'jwt', '--audience', 'someone-else', '--svid', cliJwt, ...socket])).code, 1);
  assert.equal((await agentCli(['api', 'validate', 'jwt', '--audience', 'relying-party', '--svid', `${cliJwt}x`, ...socket])).code, 1);
  assert.equal((await agentCli(['api', 'validate', 'jwt', '--audience', 'relying-party', '--svid', cliJwt.split('.').slice(0, 2).join('.'), ...socket])).code, 1);
  const written = path.join(cluster.dir, 'fetched');
  assert.equal((await agentCli(['api', 'fetch', 'x509', '--write', written, ...socket])).code, 0);
  assert.equal((await agentCli(['api', 'fetch', 'x509', '--output', 'json', ...socket], true)).code, 0);
  assert.equal((await agentCli(['api', 'fetch', 'x509', ...socket])).code, 0);
  assert.equal((await agentCli(['api', 'fetch', 'jwt', '--audience', 'relying-party', '--output', 'json', ...socket], true)).code, 0);

  // SDS: Envoy takes the SVID and ROOTCA, then NACKs an update quoting what it got.
  const sds = connectSds(agent.socketPath);
  const stream = new SotwClient(sds);
  try {
    stream.subscribe([WEB, 'ROOTCA'], envoyNode('sidecar-web'));
    const first = await stream.next(10_000);
    for (const secret of decodeSecrets(first.resources)) {
      const keyPem = secret.tls_certificate?.private_key !== undefined ? dataSourceText(secret.tls_certificate.private_key) : '';
      if (keyPem !== '') addKey(`the SDS secret ${secret.name}`, crypto.createPrivateKey(keyPem));
    }
    stream.nack(first, [WEB, 'ROOTCA'], '', 'Failed to load private key from <inline>');
    const nackLine = await agent.waitForLog(/Envoy rejected SDS secrets/);
    // One line an operator's tools read alike: parseLogLines refuses a key given twice.
    const [nack] = parseLogLines(nackLine);
    assert.equal(nack?.rpc, 'StreamSecrets');
  } finally {
    stream.cancel();
    sds.close();
  }

  // Operator commands on the server. Those printing a secret are what the command is for.
  const minted = await serverCli(['jwt', 'mint', '--spiffe-id', 'spiffe://example.org/tool', '--audience', 'relying-party'], true);
  assert.equal(minted.code, 0, minted.err);
  addJwt('a JWT-SVID from jwt mint', minted.out.trim());
  const mintedJson = await serverCli(['jwt', 'mint', '--spiffe-id', 'spiffe://example.org/tool', '--audience', 'relying-party', '--output', 'json'], true);
  addJwt('a JWT-SVID from jwt mint --output json', (JSON.parse(mintedJson.out) as { svid: { token: string } }).svid.token);
  const mintDir = path.join(cluster.dir, 'minted');
  assert.equal((await serverCli(['x509', 'mint', '--spiffe-id', 'spiffe://example.org/tool', '--write', mintDir])).code, 0);
  const mintedX509 = await serverCli(['x509', 'mint', '--spiffe-id', 'spiffe://example.org/tool', '--output', 'json'], true);
  addKey('a key from x509 mint --output json', crypto.createPrivateKey({ key: Buffer.from((JSON.parse(mintedX509.out) as { private_key: string }).private_key, 'base64'), format: 'der', type: 'pkcs8' }));
  assert.equal((await serverCli(['x509', 'mint', '--spiffe-id', 'spiffe://example.org/tool'], true)).code, 0);
  const backupDir = path.join(cluster.dir, 'backup');
  const backup = await serverCli(['backup', '--out', backupDir]);
  assert.equal(backup.code, 0, backup.err);
  assert.equal((await serverCli(['backup', '--out', backupDir])).code, 1, 'a backup is not written over another');
  for (const args of [['bundle', 'show'], ['bundle', 'show', '--format', 'spiffe'], ['ca', 'show'], ['ca', 'show', '--output', 'json'],
    ['agent', 'list'], ['agent', 'list', '--output', 'json'], ['entry', 'show', '--output', 'json'], ['bundle', 'list']]) {
    const r = await serverCli(args);
    assert.equal(r.code, 0, `${args.join(' ')}: ${r.err}`);
    assert.doesNotMatch(r.out, /"d"\s*:/, `${args.join(' ')} prints no private JWK member`);
  }
  assert.equal((await serverCli(['validate', '--config', path.join(configDir, 'server.json'), '--trust-domain', 'example.org', '--data-dir', path.join(cluster.dir, 'x')])).code, 0);

  // The agent renews its SVID (a new key) at least once.
  await agent.waitForLog(/"msg":"agent SVID renewed"/, 60_000);

  // A second agent, banned: it withdraws its identities and removes its key.
  const doomedToken = await cluster.token();
  addToken("the banned agent's join token", doomedToken);
  const doomed = await cluster.startAgent({ name: 'doomed', joinToken: doomedToken, env: TRACE });
  daemonOutputs.set('meshid-agent (banned)', () => doomed.output());
  const doomedKeys = addKeysUnder(doomed.dataDir);
  assert.ok(doomedKeys > 0, "the banned agent's key is known before it removes it");
  const listed = await cluster.admin.call('Agents', 'ListAgents', {});
  const doomedId = JSON.parse(fs.readFileSync(path.join(doomed.dataDir, 'agent-svid.json'), 'utf8')).spiffe_id as string;
  assert.ok(listed.agents?.some((a) => a.spiffe_id === doomedId));
  assert.equal((await serverCli(['agent', 'ban', '--spiffe-id', doomedId])).code, 0);
  await doomed.waitForLog(/the agent SVID and its key are removed/, 30_000);

  // The server restarted, then the agent's SVID renewed against it.
  await restartServerProcess(cluster);
  daemonOutputs.set('meshid-server (second run)', cluster.server.output!);
  assert.equal((await serverCli(['healthcheck'])).code, 0);
  const renewals = (): number => (agent.output().match(/"msg":"agent SVID renewed"/g) ?? []).length;
  const renewedBefore = renewals();
  // An SVID of 20 s is renewed within about 10 s: a generous bound on an external event, not a timing assertion.
  for (let i = 0; renewals() === renewedBefore; i++) {
    if (i > 600) assert.fail(`no agent SVID renewal after the server restart:\n${agent.output().slice(-3000)}`);
    await new Promise((r) => setTimeout(r, 100));
  }

  // Every key at rest now known: the server's CA and SVID keys, the agent's, the backup's, the files written.
  assert.ok(addKeysUnder(path.join(cluster.dir, 'server', 'data')) >= 3, 'the CA keys are found');
  assert.ok(addKeysUnder(agent.dataDir) >= 1, "the agent's key is found");
  addKeysUnder(backupDir);
  assert.ok(addKeysUnder(written) >= 1);
  assert.ok(addKeysUnder(mintDir) >= 1);
  await agent.stop();
  assert.equal(adminSocket, cluster.server.adminSocket);

  // For a reader chasing a failure: everything the processes wrote, where MESHID_TEST_OUTPUT_DIR says.
  const dump = process.env['MESHID_TEST_OUTPUT_DIR'];
  if (dump !== undefined) {
    fs.mkdirSync(dump, { recursive: true });
    for (const [name, output] of daemonOutputs) fs.writeFileSync(path.join(dump, `${name.replace(/[^\w.-]+/g, '_')}.log`), output());
    cliRuns.forEach((run, i) => fs.writeFileSync(path.join(dump, `cli-${i}.txt`), `${run.args.join(' ')}\n--- exit ${run.result.code}\n--- stdout\n${run.result.out}\n--- stderr\n${run.result.err}`));
  }

  // Nothing secret in what the daemons wrote.
  const leaks: string[] = [];
  for (const [name, output] of daemonOutputs) {
    const text = output();
    assert.ok(text.length > 0, `${name} wrote something`);
    for (const s of secrets) if (s.needles.some((n) => text.includes(n))) leaks.push(`${name} wrote ${s.what}`);
    if (/PRIVATE KEY/.test(text)) leaks.push(`${name} wrote a PEM private key`);
    const jwtLike = /eyJ[\w-]{10,}\.eyJ[\w-]{10,}\.[\w-]{10,}/.exec(text);
    if (jwtLike !== null) leaks.push(`${name} wrote a JWT: ${jwtLike[0].slice(0, 30)}…`);
  }
  // Nor on any CLI's stderr, nor on the stdout of a command whose purpose is not to print a secret.
  for (const run of cliRuns) {
    const shown = run.args.map((a) => (a.length > 40 ? `${a.slice(0, 12)}…` : a)).join(' ');
    for (const s of secrets) {
      if (s.needles.some((n) => run.result.err.includes(n))) leaks.push(`${shown} wrote ${s.what} to stderr`);
      if (!run.printsSecrets && s.needles.some((n) => run.result.out.includes(n))) leaks.push(`${shown} wrote ${s.what} to stdout`);
    }
  }
  assert.deepEqual(leaks, [], `secrets written where they must not be (${secrets.length} secrets checked)`);

  // Files holding secrets are their owner's alone, whatever the umask; so are the directories above them.
  const exposed: string[] = [];
  const secretDirs = [path.join(cluster.dir, 'server', 'data'), agent.dataDir, backupDir];
  for (const dir of secretDirs) {
    for (const d of [dir, ...dirsUnder(dir)]) if ((fs.statSync(d).mode & 0o077) !== 0) exposed.push(`${d} ${(fs.statSync(d).mode & 0o777).toString(8)}`);
    for (const f of filesUnder(dir)) if ((fs.statSync(f).mode & 0o077) !== 0) exposed.push(`${f} ${(fs.statSync(f).mode & 0o777).toString(8)}`);
  }
  for (const f of [...filesUnder(written), ...filesUnder(mintDir)]) {
    if (/PRIVATE KEY/.test(fs.readFileSync(f, 'utf8')) && (fs.statSync(f).mode & 0o077) !== 0) exposed.push(`${f} ${(fs.statSync(f).mode & 0o777).toString(8)}`);
  }
  // And the admin socket, through which JWT-SVIDs are minted and join tokens generated: the server's user's alone.
  for (const d of [written, mintDir, path.dirname(adminSocket), adminSocket]) {
    if ((fs.statSync(d).mode & 0o077) !== 0) exposed.push(`${d} ${(fs.statSync(d).mode & 0o777).toString(8)}`);
  }
  assert.deepEqual(exposed, [], 'group or world access to secrets');
});

function dirsUnder(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? [path.join(dir, e.name), ...dirsUnder(path.join(dir, e.name))] : []));
}
