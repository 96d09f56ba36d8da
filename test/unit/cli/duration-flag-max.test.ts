/**
 * Duration flags past their maximum are refused when the command line is parsed, naming the flag and the maximum: a
 * `--timeout` past JavaScript's date range used to fail at once with a message about the socket, and `api watch
 * --timeout` past Node's timer range (24.8 days) gave up at once. Every CLI flag of type duration goes through the
 * one parser: each one is run here by its command, in-process, before any socket is touched.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseArgs, type FlagSpec } from '../../../src/common/cli/args.js';
import { isMeshidError } from '../../../src/common/errors.js';
import { serverCli } from '../../../src/server/cli/server-cli.js';
import { apiCommand } from '../../../src/agent/cli/api.js';
import { healthcheckCommand } from '../../../src/agent/cli/healthcheck.js';
import { captureIo } from './capture-io.js';

const TTL: FlagSpec[] = [{ name: 'ttl', type: 'duration', description: 'TTL' }];

test('any duration flag takes at most 100 years (36500d): one beyond is refused at parse time, naming the flag and the maximum', () => {
  assert.equal(parseArgs(['--ttl', '36500d'], TTL).durationMs('ttl'), 36_500 * 86_400_000);
  for (const given of ['36501d', '100000000d']) {
    assert.throws(
      () => parseArgs(['--ttl', given], TTL),
      (err: unknown) => isMeshidError(err, 'invalid_argument') && err.message === `flag --ttl "${given}" is too long: at most 36500d`,
    );
  }
});

test('every CLI --timeout takes at most a day; the server\'s TTL flags at most what int32 seconds hold, each refused before any socket is tried', async () => {
  const runs: Array<[string, (io: ReturnType<typeof captureIo>) => Promise<number>, string]> = [
    ['meshid-server healthcheck --timeout 100000000d', (io) => serverCli(['healthcheck', '--admin-socket', '/nonexistent/admin.sock', '--timeout', '100000000d'], io), 'flag --timeout "100000000d" is too long: at most 1d'],
    ['meshid-agent healthcheck --timeout 2d', (io) => healthcheckCommand(['--socket-path', '/nonexistent/agent.sock', '--timeout', '2d'], io), 'flag --timeout "2d" is too long: at most 1d'],
    ['meshid-agent api fetch x509 --timeout 100000000d', (io) => apiCommand(['fetch', 'x509', '--socket-path', '/nonexistent/agent.sock', '--timeout', '100000000d'], io), 'flag --timeout "100000000d" is too long: at most 1d'],
    ['meshid-agent api watch --timeout 30d', (io) => apiCommand(['watch', '--socket-path', '/nonexistent/agent.sock', '--timeout', '30d'], io), 'flag --timeout "30d" is too long: at most 1d'],
    ['meshid-server token generate --ttl 100000000d', (io) => serverCli(['token', 'generate', '--admin-socket', '/nonexistent/admin.sock', '--ttl', '100000000d'], io), 'flag --ttl "100000000d" is too long: at most 24855d3h14m7s'],
    ['meshid-server entry create -x509SVIDTTL 36501d', (io) => serverCli(['entry', 'create', '--admin-socket', '/nonexistent/admin.sock', '-x509SVIDTTL', '36501d'], io), 'flag -x509SVIDTTL "36501d" is too long: at most 24855d3h14m7s'],
  ];
  for (const [name, run, message] of runs) {
    const io = captureIo({});
    assert.equal(await run(io), 1, name);
    assert.equal(io.err(), `Error: InvalidArgument: ${message}\n`, name);
    assert.equal(io.out(), '', name);
  }
  // A day is still taken.
  const io = captureIo({});
  assert.equal(await serverCli(['healthcheck', '--admin-socket', '/nonexistent/admin.sock', '--timeout', '1d'], io), 1);
  assert.match(io.err(), /^Error: Unavailable: cannot reach meshid-server on \/nonexistent\/admin\.sock/);
});

// The admin API's TTLs are int32 seconds: a TTL flag between that (about 68 years) and 100 years was let through the
// parser's maximum and refused afterwards with another message, naming the flag by its long name and the limit in seconds.
test('a TTL flag past int32 seconds is refused with the same message as any duration flag past its maximum, naming the flag as typed', async () => {
  const runs: Array<[string[], string]> = [
    [['entry', 'create', '-x509SVIDTTL', '30000d'], 'flag -x509SVIDTTL "30000d" is too long: at most 24855d3h14m7s'],
    [['entry', 'update', '-jwtSVIDTTL', '2147483648'], 'flag -jwtSVIDTTL "2147483648" is too long: at most 24855d3h14m7s'],
    [['x509', 'mint', '-ttl', '25000d'], 'flag -ttl "25000d" is too long: at most 24855d3h14m7s'],
    [['jwt', 'mint', '-ttl', '25000d'], 'flag -ttl "25000d" is too long: at most 24855d3h14m7s'],
    [['token', 'generate', '-ttl', '25000d'], 'flag -ttl "25000d" is too long: at most 24855d3h14m7s'],
  ];
  for (const [argv, message] of runs) {
    const io = captureIo({});
    assert.equal(await serverCli([...argv, '--admin-socket', '/nonexistent/admin.sock'], io), 1, argv.join(' '));
    assert.equal(io.err(), `Error: InvalidArgument: ${message}\n`, argv.join(' '));
  }
  // The largest int32 still parses (refused later, by the server, against its own maximum).
  const io = captureIo({});
  await serverCli(['token', 'generate', '-ttl', '2147483647', '--admin-socket', '/nonexistent/admin.sock'], io);
  assert.match(io.err(), /cannot reach meshid-server/);
});
