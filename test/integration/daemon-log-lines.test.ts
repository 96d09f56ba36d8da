/**
 * What `meshid-server run` and `meshid-agent run` processes log that an operator reads first: the start-up lines
 * (the configuration in force) and a host refused attestation, which no line may show the token of.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { AGENT_MAIN, startCluster } from '../support/cluster.js';
import { runNode, SERVER_MAIN } from '../support/server-process.js';
import { LEVEL, parseLogLines, type LogRecord } from '../support/log-lines.js';
import { until } from '../support/until.js';
import { tempDir } from '../support/server-kit.js';
import { joinTokenFingerprint } from '../../src/common/join-token-fingerprint.js';

const running = (output: string, msg: string): LogRecord => {
  const line = parseLogLines(output).find((r) => r.msg === msg);
  assert.ok(line, `no "${msg}" line in:\n${output}`);
  return line;
};

test('the start-up lines state the trust domain, sockets, data dirs and addresses in force', async (t) => {
  const cluster = await startCluster('meshid-startup-log-');
  t.after(() => cluster.cleanup());
  const agent = await cluster.startAgent({ joinToken: await cluster.token() });

  const server = running(cluster.server.output!(), 'meshid-server is running');
  assert.deepEqual(
    { trustDomain: server['trustDomain'], datacenters: server['datacenters'], adminSocket: server['adminSocket'], dataDir: server['dataDir'] },
    { trustDomain: 'example.org', datacenters: ['east'], adminSocket: cluster.server.adminSocket, dataDir: path.join(cluster.dir, 'server', 'data') },
  );
  assert.equal(server['agentApi'], cluster.server.address());
  // The build's version, as --version prints it: which build a server's log came from.
  const version = /^meshid-server (\S+)\n$/.exec((await runNode(SERVER_MAIN, ['--version'])).out)![1];
  assert.equal(server['version'], version);

  const started = running(agent.output(), 'meshid-agent is running');
  assert.deepEqual(
    { trustDomain: started['trustDomain'], socket: started['socket'], server: started['server'], dataDir: started['dataDir'] },
    { trustDomain: 'example.org', socket: agent.socketPath, server: cluster.server.address(), dataDir: agent.dataDir },
  );
  assert.equal(started['version'], version);
});

test('a host refused attestation (its join token unknown, then spent) is logged by the server at warn with its address, never with the token', async (t) => {
  const cluster = await startCluster('meshid-attest-refused-log-');
  t.after(() => cluster.cleanup());
  const unknown = 'ab'.repeat(20);
  const refused = await cluster.startAgent({ name: 'unknown-token', joinToken: unknown, wait: false });
  assert.equal(await refused.exitCode(), 1);
  const spent = await cluster.token();
  await cluster.startAgent({ name: 'first', joinToken: spent });
  const second = await cluster.startAgent({ name: 'second', joinToken: spent, wait: false });
  assert.equal(await second.exitCode(), 1);

  // Written before the server answers, read through the process's pipe.
  await until('the refusal line', () => (/refused to attest an agent/.test(cluster.server.output!()) ? true : undefined));
  const refusals = parseLogLines(cluster.server.output!()).filter((r) => r.msg === 'refused to attest an agent');
  assert.equal(refusals.length, 1, 'two attempts refused for one reason in a minute: one line');
  assert.equal(refusals[0]!.level, LEVEL.warn);
  assert.match(String(refusals[0]!['peer']), /127\.0\.0\.1/);
  assert.match(String(refusals[0]!['reason']), /join token is unknown, already used or revoked; generate a new one/);
  assert.equal(refusals[0]!['tokenFingerprint'], joinTokenFingerprint(unknown), 'names which token, without it');
  for (const output of [cluster.server.output!(), refused.output(), second.output()]) {
    assert.doesNotMatch(output, new RegExp(unknown));
    assert.doesNotMatch(output, new RegExp(spent));
  }
});

test('one join token is followed from "join token generated" to the agent that spent it by its fingerprint, in both daemons\' logs', async (t) => {
  const cluster = await startCluster('meshid-token-fingerprint-log-');
  t.after(() => cluster.cleanup());
  const token = await cluster.token();
  const other = await cluster.token();
  const agent = await cluster.startAgent({ joinToken: token });

  const generated = parseLogLines(cluster.server.output!()).filter((r) => r.msg === 'join token generated');
  assert.deepEqual(generated.map((r) => r['tokenFingerprint']), [joinTokenFingerprint(token), joinTokenFingerprint(other)]);
  const attested = running(cluster.server.output!(), 'agent attested with a join token');
  assert.equal(attested['tokenFingerprint'], joinTokenFingerprint(token));
  const onHost = running(agent.output(), 'attested to meshid-server with a join token');
  assert.deepEqual([onHost['tokenFingerprint'], onHost['agent']], [joinTokenFingerprint(token), attested['agent']]);
  for (const output of [cluster.server.output!(), agent.output()]) assert.doesNotMatch(output, new RegExp(token));
});

test('MESHID_LOG_LEVEL naming no level is refused naming MESHID_LOG_LEVEL, not a log_level the config does not hold', async (t) => {
  const { dir, cleanup } = tempDir('meshid-env-log-level-');
  t.after(cleanup);
  const env = { MESHID_LOG_LEVEL: 'verbose' };
  const want = 'Error: InvalidArgument: MESHID_LOG_LEVEL "verbose" is not one of trace, debug, info, warn, error, fatal, warning, panic\n';
  const serverArgs = ['--trust-domain', 'example.org', '--data-dir', path.join(dir, 'server'), '--admin-socket', path.join(dir, 'admin', 'a.sock'), '--bind-address', '127.0.0.1:0'];
  const agentArgs = ['--server-address', '127.0.0.1:1', '--trust-domain', 'example.org', '--insecure-bootstrap', '--join-token', 'x', '--data-dir', path.join(dir, 'agent'), '--socket-path', path.join(dir, 'sock', 'api.sock')];
  for (const [main, args] of [[SERVER_MAIN, serverArgs], [AGENT_MAIN, agentArgs]] as const) {
    for (const command of ['validate', 'run']) {
      const r = await runNode(main, [command, ...args], env);
      assert.equal(r.code, 1, `${path.basename(main)} ${command}: ${r.err}`);
      assert.equal(r.err.split('\n').filter((l) => !l.startsWith('WARNING: --insecure-bootstrap')).join('\n'), want, `${path.basename(main)} ${command}`);
    }
    // A level given by flag or config wins, as before: the environment is not read then.
    assert.equal((await runNode(main, ['validate', ...args, '--log-level', 'DEBUG'], env)).code, 0);
  }
});
