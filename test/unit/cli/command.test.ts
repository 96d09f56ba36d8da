import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runCommand, runGroup, type Command } from '../../../src/common/cli/command.js';
import { invalidArgument } from '../../../src/common/errors.js';
import { captureIo } from './capture-io.js';

const echo: Command = {
  name: 'echo',
  summary: 'Echoes its --word.',
  flags: [{ name: 'word', type: 'string', description: 'What to say' }],
  async run(args, io) {
    const word = args.requiredString('word');
    if (word === 'bad') throw invalidArgument('bad word');
    io.stdout.write(`${word}\n`);
    return 0;
  },
};

test('a command runs with its parsed flags and returns its exit status', async () => {
  const io = captureIo();
  assert.equal(await runCommand('tool echo', echo, ['--word=hi'], io), 0);
  assert.equal(io.out(), 'hi\n');
  assert.equal(io.err(), '');
});

test('--help prints the command help on stdout and exits 0 without running it', async () => {
  const io = captureIo();
  assert.equal(await runCommand('tool echo', echo, ['--word', 'bad', '--help'], io), 0);
  assert.match(io.out(), /^Usage: tool echo \[flags\]\n\nEchoes its --word\./);
  assert.equal(io.err(), '');
});

test('parse errors, missing required flags and thrown errors are one stderr line and exit 1', async () => {
  for (const [argv, line] of [
    [['--wrd', 'x'], 'Error: InvalidArgument: unknown flag --wrd (did you mean --word?)\n'],
    [[], 'Error: InvalidArgument: flag --word is required\n'],
    [['--word', 'bad'], 'Error: InvalidArgument: bad word\n'],
  ] as const) {
    const io = captureIo();
    assert.equal(await runCommand('tool echo', echo, argv, io), 1);
    assert.equal(io.err(), line);
    assert.equal(io.out(), '');
  }
});

test('a group dispatches to its subcommand', async () => {
  const io = captureIo();
  assert.equal(await runGroup('tool', 'Tools.', [echo], ['echo', '--word', 'x'], io), 0);
  assert.equal(io.out(), 'x\n');
});

test('an unknown subcommand is an error suggesting the closest one', async () => {
  const io = captureIo();
  assert.equal(await runGroup('tool', 'Tools.', [echo], ['ecko'], io), 1);
  assert.equal(io.err(), 'Error: InvalidArgument: unknown command "tool ecko" (did you mean "echo"?)\n');
});

test('a flag where the subcommand goes says a command is missing, not that the flag is an unknown command', async () => {
  const io = captureIo();
  assert.equal(await runGroup('tool', 'Tools.', [echo], ['--word', 'x'], io), 1);
  assert.equal(io.err(), 'Error: InvalidArgument: tool needs a command before its flags, got --word: one of echo (e.g. tool echo --word …)\n');
  const empty = captureIo();
  assert.equal(await runGroup('tool', 'Tools.', [echo], [''], empty), 1);
  assert.equal(empty.err(), 'Error: InvalidArgument: unknown command "tool " (known: echo)\n', 'an empty word suggests nothing');
});

test('a group without a subcommand prints its help to stderr and fails; with --help to stdout and succeeds', async () => {
  const bare = captureIo();
  assert.equal(await runGroup('tool', 'Tools.', [echo], [], bare), 1);
  assert.match(bare.err(), /Commands:\n {2}echo {2}Echoes its --word\./);
  const help = captureIo();
  assert.equal(await runGroup('tool', 'Tools.', [echo], ['--help'], help), 0);
  assert.match(help.out(), /^Usage: tool <command> \[flags\]/);
});

test('a token or JWT-SVID where the subcommand goes is not echoed, as a flag with its value there is not either', async () => {
  // `meshid-server token <token>` (revoke forgotten), `meshid-agent api validate <jwt>` (jwt forgotten), and the
  // same with the token as a flag's value: stderr ends up in scrollback and CI logs.
  const secrets = ['0123456789abcdef0123456789abcdef01234567', '3f1c2b4a-9d8e-4f70-a1b2-c3d4e5f60718', 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln'];
  for (const secret of secrets) {
    for (const argv of [[secret], [`--word=${secret}`], [`-word=${secret}`, 'x']]) {
      const io = captureIo();
      assert.equal(await runGroup('tool', 'Tools.', [echo], argv, io), 1);
      assert.ok(!io.err().includes(secret.slice(0, 12)), `${argv[0]!.slice(0, 8)}…: ${io.err().length} characters of error, none of the secret`);
      assert.match(io.err(), /^Error: InvalidArgument: /);
    }
  }
  const bare = captureIo();
  assert.equal(await runGroup('tool', 'Tools.', [echo], [secrets[0]!], bare), 1);
  assert.equal(bare.err(), 'Error: InvalidArgument: unknown command (a token or JWT-SVID, not repeated here: give it to the flag that takes it, after the command) for tool: one of echo\n');
  const flag = captureIo();
  assert.equal(await runGroup('tool', 'Tools.', [echo], [`--word=${secrets[2]}`], flag), 1);
  assert.equal(flag.err(), 'Error: InvalidArgument: tool needs a command before its flags, got --word=…: one of echo (e.g. tool echo --word=… …)\n');
});
