import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatHelp, parseArgs, type FlagSpec } from '../../../src/common/cli/args.js';
import { isMeshidError } from '../../../src/common/errors.js';

const SPECS: FlagSpec[] = [
  { name: 'spiffe-id', aliases: ['spiffeID'], type: 'string', valueName: 'ID', description: 'SPIFFE ID' },
  { name: 'parent-id', aliases: ['parentID'], type: 'string', description: 'Parent ID' },
  { name: 'selector', type: 'strings', description: 'Selector' },
  { name: 'x509-svid-ttl', aliases: ['x509SVIDTTL', 'ttl'], type: 'duration', description: 'TTL' },
  { name: 'admin', type: 'bool', description: 'Admin' },
  { name: 'output', type: 'string', choices: ['json', 'pretty'], description: 'Output' },
];

/** Asserts that parsing fails with InvalidArgument and returns the message. */
function failure(argv: string[], specs = SPECS, maxPositionals = 0): string {
  try {
    parseArgs(argv, specs, { maxPositionals });
  } catch (err) {
    assert.ok(isMeshidError(err, 'invalid_argument'), `expected InvalidArgument, got ${String(err)}`);
    return err.message;
  }
  assert.fail(`parsing ${JSON.stringify(argv)} should have failed`);
}

test('GNU long flags take their value from the next word or after "="', () => {
  const a = parseArgs(['--spiffe-id', 'spiffe://td/a', '--parent-id=spiffe://td/p'], SPECS);
  assert.equal(a.string('spiffe-id'), 'spiffe://td/a');
  assert.equal(a.string('parent-id'), 'spiffe://td/p');
});

test('a value after "=" may itself contain "=" and ":"', () => {
  assert.equal(parseArgs(['--selector=k8s:label:a=b'], SPECS).strings('selector')[0], 'k8s:label:a=b');
});

test("spire-server's spellings are accepted with one or two dashes and land on the canonical flag", () => {
  const a = parseArgs(['-spiffeID', 'spiffe://td/a', '--parentID', 'spiffe://td/p', '-x509SVIDTTL=60', '-selector', 'unix:uid:0'], SPECS);
  assert.equal(a.string('spiffe-id'), 'spiffe://td/a');
  assert.equal(a.string('parent-id'), 'spiffe://td/p');
  assert.equal(a.seconds('x509-svid-ttl'), 60);
  assert.deepEqual(a.strings('selector'), ['unix:uid:0']);
});

test('canonical names also work with a single dash, as Go flags do', () => {
  assert.equal(parseArgs(['-output', 'json'], SPECS).string('output'), 'json');
});

test('aliases are case-sensitive: -spiffeid is not -spiffeID', () => {
  assert.match(failure(['-spiffeid', 'x']), /unknown flag -spiffeid \(did you mean -spiffeID\?\)/);
});

test('repeated strings flags accumulate in order, across spellings', () => {
  const a = parseArgs(['--selector', 'unix:uid:1000', '-selector', 'unix:gid:0', '--selector=unix:user:x'], SPECS);
  assert.deepEqual(a.strings('selector'), ['unix:uid:1000', 'unix:gid:0', 'unix:user:x']);
});

test('an absent strings flag reads as an empty list and is not "given"', () => {
  const a = parseArgs([], SPECS);
  assert.deepEqual(a.strings('selector'), []);
  assert.equal(a.has('selector'), false);
  assert.deepEqual(a.given, []);
});

test('given lists canonical names in the order first seen', () => {
  const a = parseArgs(['--admin', '-selector', 'a:b', '-spiffeID', 'x', '--selector', 'c:d'], SPECS);
  assert.deepEqual(a.given, ['admin', 'selector', 'spiffe-id']);
});

test('a single-valued flag given twice is an error, even under two spellings', () => {
  assert.equal(failure(['--spiffe-id', 'a', '--spiffe-id', 'b']), 'flag --spiffe-id is given more than once');
  assert.equal(failure(['--spiffe-id', 'a', '-spiffe-id', 'b']), 'flag -spiffe-id is given more than once');
  assert.equal(failure(['--spiffe-id', 'a', '-spiffeID', 'b']), 'flags --spiffe-id and -spiffeID are two spellings of one flag (--spiffe-id): give it once');
});

test('two aliases of one flag, each given once (-ttl and -x509SVIDTTL), are named both, not as one given twice', () => {
  assert.equal(failure(['-ttl', '3600', '-x509SVIDTTL', '3600']), 'flags -ttl and -x509SVIDTTL are two spellings of one flag (--x509-svid-ttl): give it once');
  const specs: FlagSpec[] = [{ name: 'node', aliases: ['nodeAlias'], type: 'bool', description: 'Node' }, { name: 'hint', aliases: ['h2'], type: 'string', emptyClears: true, description: 'Hint' }];
  assert.equal(failure(['--node', '-nodeAlias=false'], specs), 'flags --node and -nodeAlias are two spellings of one flag (--node): give it once');
  assert.equal(failure(['-h2', 'x', '--hint', ''], specs), 'flags -h2 and --hint are two spellings of one flag (--hint): give it once');
});

test('unknown flags are an error that names the flag and suggests the closest known spelling', () => {
  assert.equal(failure(['--spife-id', 'x']), 'unknown flag --spife-id (did you mean --spiffe-id?)');
  assert.equal(failure(['--selectr', 'x']), 'unknown flag --selectr (did you mean --selector?)');
  assert.equal(failure(['-parentId', 'x']), 'unknown flag -parentId (did you mean -parentID?)');
  assert.equal(failure(['--sleector=x']), 'unknown flag --sleector (did you mean --selector?)');
});

test('a typo typed with two dashes is answered with the long name, even when a SPIRE alias is closer', () => {
  assert.equal(failure(['--parentid', 'x']), 'unknown flag --parentid (did you mean --parent-id?)');
  assert.equal(failure(['--spiffeId=x']), 'unknown flag --spiffeId (did you mean --spiffe-id?)');
  assert.equal(failure(['--x509svidttl', '1h']), 'unknown flag --x509svidttl (did you mean --x509-svid-ttl?)');
  assert.equal(failure(['-parentid', 'x']), 'unknown flag -parentid (did you mean -parentID?)');
});

test('an unknown flag with nothing close points at --help instead of guessing', () => {
  assert.equal(failure(['--frobnicate']), 'unknown flag --frobnicate (see --help for the flags this command takes)');
});

test('a flag missing its value is an error naming it', () => {
  assert.equal(failure(['--spiffe-id']), 'flag --spiffe-id needs a value');
  assert.match(failure(['--spiffe-id', '--parent-id', 'x']), /^flag --spiffe-id needs a value, got flag "--parent-id"/);
  assert.equal(failure(['--spiffe-id=']), 'flag --spiffe-id has an empty value');
});

test('a value starting with "-" is accepted after "="', () => {
  assert.equal(parseArgs(['--spiffe-id=-x'], SPECS).string('spiffe-id'), '-x');
});

test('bool flags are true when present, take =true/=false, and never swallow the next word', () => {
  assert.equal(parseArgs(['--admin'], SPECS).bool('admin'), true);
  assert.equal(parseArgs(['--admin=false'], SPECS).bool('admin'), false);
  assert.equal(parseArgs(['--admin=true'], SPECS).bool('admin'), true);
  assert.equal(parseArgs([], SPECS).bool('admin'), undefined);
  const a = parseArgs(['--admin', 'extra'], SPECS, { maxPositionals: 1 });
  assert.equal(a.bool('admin'), true);
  assert.deepEqual(a.positionals, ['extra']);
  assert.equal(failure(['--admin=maybe']), 'flag --admin takes true or false, got "maybe"');
});

test('choices are enforced at parse time', () => {
  assert.equal(failure(['--output', 'yaml']), 'flag --output must be one of json, pretty, got "yaml"');
});

test('durations accept plain seconds and units, and read back as whole seconds', () => {
  assert.equal(parseArgs(['--x509-svid-ttl', '3600'], SPECS).seconds('x509-svid-ttl'), 3600);
  assert.equal(parseArgs(['--x509-svid-ttl', '1h30m'], SPECS).seconds('x509-svid-ttl'), 5400);
  assert.equal(parseArgs(['-ttl', '24h'], SPECS).durationMs('x509-svid-ttl'), 86_400_000);
  assert.equal(parseArgs([], SPECS).seconds('x509-svid-ttl'), undefined);
});

test('a token or JWT-SVID given as the value of the wrong flag is not repeated in the refusal; other values are', () => {
  const secrets = ['0123456789abcdef0123456789abcdef01234567', '3f1c2b4a-9d8e-4f70-a1b2-c3d4e5f60718', 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln'];
  const notRepeated = '(a token or JWT-SVID, not repeated here: give it to the flag that takes it)';
  for (const secret of secrets) {
    assert.equal(failure(['--output', secret]), `flag --output must be one of json, pretty, got ${notRepeated}`);
    assert.equal(failure([`--admin=${secret}`]), `flag --admin takes true or false, got ${notRepeated}`);
    assert.equal(failure(['--ttl', secret]), `flag --ttl takes a duration (3600, 90s, 15m, 24h, 7d), got ${notRepeated}`);
  }
  assert.equal(failure(['--output', 'yaml']), 'flag --output must be one of json, pretty, got "yaml"');
  assert.equal(failure(['--admin=maybe']), 'flag --admin takes true or false, got "maybe"');
  assert.match(failure(['--ttl', '5 minutes']), /^flag --ttl "5 minutes" is not a valid duration/);
});

test('a malformed duration is an InvalidArgument naming the flag', () => {
  assert.match(failure(['--x509-svid-ttl', 'abc']), /^flag --x509-svid-ttl "abc" is not a valid duration/);
  assert.match(failure(['--x509-svid-ttl', '0']), /flag --x509-svid-ttl must be positive, got "0"/);
  // Well formed with a unit, refused for its value, not its form.
  assert.match(failure(['--x509-svid-ttl', '0s']), /flag --x509-svid-ttl must be positive, got "0s"/);
  assert.match(failure(['--x509-svid-ttl', '0h0m']), /flag --x509-svid-ttl must be positive, got "0h0m"/);
});

test('a duration that is not whole seconds is refused, not rounded', () => {
  const a = parseArgs(['--x509-svid-ttl', '1500ms'], SPECS);
  assert.throws(() => a.seconds('x509-svid-ttl'), (err: unknown) => isMeshidError(err, 'invalid_argument') && /not a whole number of seconds/.test(err.message));
});

test('positionals are refused unless the command takes them; "--" ends flags', () => {
  assert.equal(failure(['stray']), 'unexpected argument "stray": this command takes only flags');
  // A token or JWT-SVID typed without its flag is not echoed to stderr (scrollback, CI logs); a near miss is.
  const secrets = ['0123456789abcdef0123456789abcdef01234567', '3f1c2b4a-9d8e-4f70-a1b2-c3d4e5f60718', 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln'];
  for (const secret of secrets) {
    assert.equal(failure([secret]), 'unexpected argument (a token or JWT-SVID, not repeated here: give it to the flag that takes it): this command takes only flags');
  }
  // With the CR or spaces a token keeps when read from a CRLF file by $(cat …): still a token (join_token is trimmed).
  for (const secret of secrets) {
    for (const padded of [`${secret}\r`, ` ${secret}`, `${secret}\r\n`]) assert.ok(!failure([padded]).includes(secret.slice(0, 12)), JSON.stringify(padded.slice(-2)));
  }
  assert.equal(failure(['0123456789abcdef']), 'unexpected argument "0123456789abcdef": this command takes only flags');
  assert.equal(failure(['spiffe://example.org/web']), 'unexpected argument "spiffe://example.org/web": this command takes only flags');
  const a = parseArgs(['--admin', '--', '--selector', 'x'], SPECS, { maxPositionals: 2 });
  assert.deepEqual(a.positionals, ['--selector', 'x']);
  assert.deepEqual(a.strings('selector'), []);
});

test('-h, -help and --help ask for help without being declared', () => {
  for (const h of ['-h', '-help', '--help']) assert.equal(parseArgs([h], SPECS).help, true);
  assert.equal(parseArgs(['--admin'], SPECS).help, false);
});

test('reading a flag the command did not declare is a programming error, not an operator error', () => {
  const a = parseArgs([], SPECS);
  assert.throws(() => a.string('nope'), (err: unknown) => !isMeshidError(err) && /not declared/.test((err as Error).message));
  assert.throws(() => a.string('selector'), /declared as strings/);
});

test('help lists each flag with its placeholder, description, repeatability and aliases', () => {
  const help = formatHelp('meshid-server entry create [flags]', 'Creates an entry.', SPECS);
  assert.match(help, /^Usage: meshid-server entry create \[flags\]\n\nCreates an entry\.\n\nFlags:\n/);
  assert.match(help, /--spiffe-id ID +SPIFFE ID \(alias -spiffeID\)\n/);
  assert.match(help, /--selector VALUE +Selector \(repeatable\)\n/);
  assert.match(help, /--x509-svid-ttl DURATION +TTL \(alias -x509SVIDTTL, -ttl\)\n/);
  assert.match(help, /--output json\|pretty +Output\n/);
  assert.match(help, /--admin +Admin\n/);
  assert.match(help, /--help +Show this help\n$/);
});

test('an empty value clears where a flag allows it: a string becomes "", a list the empty list, only on its own', () => {
  const specs: FlagSpec[] = [
    { name: 'hint', type: 'string', emptyClears: true, description: 'Hint' },
    { name: 'dns', type: 'strings', emptyClears: true, description: 'DNS' },
    { name: 'ttl', type: 'duration', zeroAllowed: true, description: 'TTL' },
    { name: 'max-ttl', type: 'duration', description: 'Max TTL' },
  ];
  const a = parseArgs(['--hint', '', '--dns=', '--ttl', '0s'], specs);
  assert.deepEqual([a.string('hint'), a.strings('dns'), a.has('dns'), a.durationMs('ttl')], ['', [], true, 0]);
  assert.equal(failure(['--dns', 'a.example', '--dns', ''], specs), 'flag --dns "" (none) cannot be combined with other values of --dns');
  assert.equal(failure(['--dns', '', '--dns', 'a.example'], specs), 'flag --dns "" (none) cannot be combined with other values of --dns');
  assert.equal(failure(['--hint', '', '--hint', ''], specs), 'flag --hint is given more than once');
  assert.match(failure(['--max-ttl', '0'], specs), /flag --max-ttl must be positive, got "0"/);
});
