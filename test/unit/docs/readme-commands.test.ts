/**
 * The README is the operator guide: the command lines it shows must parse, every daemon setting must be findable in
 * it, and its example configs must be accepted. Checked against the executables' own --help and config compilers, so
 * a renamed flag or key fails here instead of in an operator's shell. docs/*.md are held to the same commands and
 * environment variables. No daemon is started: each check is a --help or a config compile.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { packageRoot } from '../../../src/common/paths.js';
import { RUN_FLAGS as SERVER_RUN_FLAGS, serverConfigFrom } from '../../../src/server/cli/run-config.js';
import { RUN_FLAGS as AGENT_RUN_FLAGS, agentConfigFrom } from '../../../src/agent/cli/run-config.js';
import { KNOWN_KEYS as SERVER_KEYS, SERVER_DEFAULTS } from '../../../src/server/config.js';
import { KNOWN_KEYS as AGENT_KEYS, MAX_CALLS_PER_UID_SETTING, MAX_CONNECTIONS_PER_UID_SETTING, MAX_JWT_SVID_CACHE_SIZE, SDS_KEYS } from '../../../src/agent/config.js';
import { DEFAULT_JWT_CACHE_SIZE } from '../../../src/agent/cache/jwt-svid-cache.js';
import { DEFAULT_MAX_CONNECTIONS_PER_UID } from '../../../src/agent/endpoints/uds-server.js';
import { DEFAULT_MAX_CALLS_PER_UID } from '../../../src/agent/endpoints/uid-call-limit.js';
import { HEALTH_CHECKS_KEYS } from '../../../src/common/health/health-checks-config.js';
import { DEFAULT_CONNECTION_LIMITS } from '../../../src/server/api/agent-api-connections.js';
import { AGENT_API_MAX_CONCURRENT_STREAMS } from '../../../src/server/api/agent-api-options.js';
import { AGENT_MAIN } from '../../support/cluster.js';
import { runNode, SERVER_MAIN } from '../../support/server-process.js';

const README = fs.readFileSync(path.join(packageRoot, 'README.md'), 'utf8');
/** The operator docs beside the README, by file name. */
const DOCS = new Map(
  fs.readdirSync(path.join(packageRoot, 'docs')).filter((f) => f.endsWith('.md')).map((f) => [`docs/${f}`, fs.readFileSync(path.join(packageRoot, 'docs', f), 'utf8')]),
);
const ALL_DOCS = new Map([['README.md', README], ...DOCS]);
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshid-readme-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

/** The bodies of the README's fenced blocks of one language, in order. */
function fenced(lang: string): string[] {
  return [...README.matchAll(new RegExp('```' + lang + '\\n([\\s\\S]*?)```', 'g'))].map((m) => m[1]!);
}

interface CommandLine {
  binary: 'meshid-server' | 'meshid-agent';
  /** The subcommand words, e.g. ['entry', 'create']. */
  words: string[];
  flags: string[];
  text: string;
}

/** Every meshid-server / meshid-agent invocation in the sh blocks, and in inline code that names the executable. */
function commandLines(): CommandLine[] {
  const texts: string[] = [];
  for (const block of fenced('sh')) {
    for (const line of block.replace(/\\\n/g, ' ').split('\n')) texts.push(line.replace(/\s#.*$/, ''));
  }
  for (const m of README.matchAll(/`((?:meshid-server|meshid-agent) [^`]*)`/g)) texts.push(m[1]!.replace(/\n/g, ' '));
  const lines: CommandLine[] = [];
  for (const text of texts) {
    const tokens = text.split(/\s+/);
    tokens.forEach((token, i) => {
      if (token !== 'meshid-server' && token !== 'meshid-agent') return;
      const words: string[] = [];
      const flags: string[] = [];
      for (const t of tokens.slice(i + 1)) {
        // The end of this command in a shell line: a separator, a redirection or a pipe.
        if (/^(;|&&?|\|\|?|>.*)$/.test(t) || t.endsWith(';')) break;
        if (t.startsWith('-') && t !== '-') flags.push(t);
        else if (flags.length === 0 && /^[a-z][a-z0-9-]*$/.test(t)) words.push(t);
      }
      if (flags.length > 0) lines.push({ binary: token, words, flags, text });
    });
  }
  return lines;
}

const helps = new Map<string, string>();
async function help(binary: CommandLine['binary'], words: string[]): Promise<string> {
  const key = [binary, ...words].join(' ');
  if (!helps.has(key)) {
    const r = await runNode(binary === 'meshid-server' ? SERVER_MAIN : AGENT_MAIN, [...words, '--help']);
    assert.equal(r.code, 0, `${key} --help: ${r.err}`);
    helps.set(key, r.out);
  }
  return helps.get(key)!;
}

test('every flag of a meshid-server or meshid-agent command line the README shows is one that command takes', async () => {
  const lines = commandLines();
  assert.ok(lines.length >= 25, `found only ${lines.length} command lines in README.md`);
  const unknown: string[] = [];
  for (const line of lines) {
    const text = await help(line.binary, line.words);
    for (const flag of line.flags) {
      const name = flag.replace(/^--?/, '').split('=')[0]!;
      // Help lists --name, and SPIRE's spellings as "(alias -name, -other)"; either dash form is accepted for both.
      if (!new RegExp(`(^|[\\s,(])--?${name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\b`, 'm').test(text)) {
        unknown.push(`${flag} in "${line.text.trim()}"`);
      }
    }
  }
  assert.deepEqual(unknown, []);
});

test('every flag of meshid-server run and meshid-agent run is named in the README, as the flag or its config key', () => {
  const missing = [...SERVER_RUN_FLAGS, ...AGENT_RUN_FLAGS]
    .map((f) => f.name)
    .filter((name) => name !== 'help' && !README.includes(`--${name}`) && !README.includes(`\`${name.replace(/-/g, '_')}\``));
  assert.deepEqual(missing, []);
});

test('the filter and wait flags once in --help only are named in the README where their command is described', async () => {
  // A paragraph (or sh block) of the README, split at blank lines, that names the command and the flag both.
  const paragraphs = README.split(/\n\s*\n/);
  // [binary, the command words --help is asked of, the flag, the command as the README names it (default: the words)]
  const flags: Array<[CommandLine['binary'], string[], string, string?]> = [
    ['meshid-server', ['agent', 'list'], '--attestation-type'],
    ['meshid-server', ['entry', 'show'], '--match-federates-with'],
    ['meshid-server', ['federation', 'create'], '--bundle-format'],
    ['meshid-agent', ['api', 'watch'], '--timeout'],
    ['meshid-agent', ['api', 'fetch', 'x509'], '--timeout', 'api fetch'],
  ];
  const missing: string[] = [];
  for (const [binary, words, flag, named] of flags) {
    assert.match(await help(binary, words), new RegExp(`^  ${flag} `, 'm'), `${binary} ${words.join(' ')} --help lists ${flag}`);
    const command = named ?? words.join(' ');
    if (!paragraphs.some((p) => p.includes(command) && p.includes(flag))) missing.push(`${command} ${flag}`);
  }
  assert.deepEqual(missing, []);
});

test('the README\'s example agent config (health_checks) is accepted as written', () => {
  const json = fenced('json').find((b) => b.includes('"server_address"'));
  assert.ok(json !== undefined, 'no agent config example in README.md');
  const file = path.join(dir, 'agent.json');
  fs.writeFileSync(file, json);
  const config = agentConfigFrom(['--config', file], {});
  assert.equal(config?.serverAddress, 'meshid-server:8081');
});

test('the README\'s federates_with example is accepted as written in a server config', () => {
  const fragment = fenced('json').find((b) => b.startsWith('"federates_with"'));
  assert.ok(fragment !== undefined, 'no federates_with example in README.md');
  const file = path.join(dir, 'server.json');
  fs.writeFileSync(file, `{ "trust_domain": "example.org",\n${fragment}}\n`);
  const config = serverConfigFrom(['--config', file], {});
  assert.deepEqual(config?.federatesWith.map((r) => r.trustDomain).sort(), ['partner.org', 'web.example']);
});

/**
 * spire-server commands the README names as not there: each must be refused saying what to run instead, not answered
 * with a usage error. [the words, what the refusal must point to]
 */
const REFUSED_COMMANDS: ReadonlyArray<[string[], RegExp]> = [
  [['localauthority'], /meshid-server ca/],
  [['upstreamauthority'], /meshid-server ca/],
  [['agent', 'purge'], /agent list/],
  [['debug', 'getinfo'], /ca show/],
];

/** Every `meshid-server …` / `meshid-agent …` the docs name (sh blocks and inline code), as its command words. */
function namedCommands(): Array<{ binary: CommandLine['binary']; words: string[]; where: string }> {
  const found = new Map<string, { binary: CommandLine['binary']; words: string[]; where: string }>();
  for (const [file, text] of ALL_DOCS) {
    const texts: string[] = [];
    for (const m of text.matchAll(/```sh\n([\s\S]*?)```/g)) {
      for (const line of m[1]!.replace(/\\\n/g, ' ').split('\n')) texts.push(line.replace(/\s#.*$/, ''));
    }
    // Inline code with an ellipsis quotes a log line or an error (`meshid-agent cannot reach meshid-server at …`).
    for (const m of text.replace(/```[\s\S]*?```/g, '').matchAll(/`((?:meshid-server|meshid-agent)(?: [^`]*)?)`/g)) {
      if (!m[1]!.includes('…')) texts.push(m[1]!.replace(/\n/g, ' '));
    }
    for (const t of texts) {
      for (const m of t.matchAll(/(?<![\w/.-])(meshid-server|meshid-agent)((?: [a-z][a-z0-9-]*)*)/g)) {
        // Output quoted in the docs ("meshid-server 0.1.0+6ebd53b") names no command: only the words up to the first
        // that no command has (a value, a flag, a pipe) count.
        const words = m[2]!.trim().split(/\s+/).filter(Boolean);
        const key = `${m[1]} ${words.join(' ')}`;
        if (!found.has(key)) found.set(key, { binary: m[1] as CommandLine['binary'], words, where: `${file}: ${t.trim()}` });
      }
    }
  }
  return [...found.values()];
}

/** The command words of `words` that name a (sub)command, per the executables' --help "Commands:" lists. */
async function commandPrefix(binary: CommandLine['binary'], words: string[]): Promise<string[]> {
  const prefix: string[] = [];
  for (const word of words) {
    const text = await help(binary, prefix);
    const commands = subcommands(text);
    if (!commands.includes(word)) break;
    prefix.push(word);
  }
  return prefix;
}

/** The names a --help text lists under "Commands:". */
function subcommands(helpText: string): string[] {
  const section = helpText.split(/^Commands:\n/m)[1];
  if (section === undefined) return [];
  return [...section.split(/\n\n/)[0]!.matchAll(/^  ([a-z][a-z0-9-]*)\s/gm)].map((m) => m[1]!);
}

test('every meshid-server and meshid-agent command the README and docs/*.md name exists, or is refused saying what instead', async () => {
  const named = namedCommands();
  assert.ok(named.length >= 25, `found only ${named.length} commands in the docs`);
  const unknown: string[] = [];
  for (const { binary, words, where } of named) {
    const refused = REFUSED_COMMANDS.find(([w]) => binary === 'meshid-server' && w.every((x, i) => words[i] === x));
    if (refused !== undefined) {
      const r = await runNode(SERVER_MAIN, refused[0]);
      assert.equal(r.code, 1, `${refused[0].join(' ')}: ${r.out}${r.err}`);
      assert.match(r.err, refused[1], `${refused[0].join(' ')} says what to run instead`);
      continue;
    }
    const prefix = await commandPrefix(binary, words);
    // A word after the command that looks like a subcommand of a group (a group takes no positional argument).
    const next = words[prefix.length];
    if (next !== undefined && subcommands(await help(binary, prefix)).length > 0) unknown.push(`${binary} ${words.join(' ')} (in ${where})`);
  }
  assert.deepEqual(unknown, []);
});

test('the command lists in each --help summary name exactly the subcommands that group has', async () => {
  const mismatches: string[] = [];
  for (const binary of ['meshid-server', 'meshid-agent'] as const) {
    const top = await help(binary, []);
    for (const m of top.matchAll(/^  ([a-z][a-z0-9-]*)\s+.*\(([a-z0-9-]+(?:, [a-z0-9-]+)+)\)$/gm)) {
      const listed = m[2]!.split(', ').sort();
      const actual = subcommands(await help(binary, [m[1]!])).sort();
      if (listed.join() !== actual.join()) mismatches.push(`${binary} ${m[1]}: --help says (${listed.join(', ')}), has (${actual.join(', ')})`);
    }
  }
  assert.deepEqual(mismatches, []);
});

test('every MESHID_* environment variable the README and docs/*.md name is read somewhere in the sources', () => {
  const sources = ['src', 'test', 'scripts', 'bench']
    .flatMap((dir) => fs.readdirSync(path.join(packageRoot, dir), { recursive: true, encoding: 'utf8' }).map((f) => path.join(packageRoot, dir, f)))
    .filter((f) => /\.(ts|mjs|js|sh)$/.test(f) && !f.includes(`${path.sep}node_modules${path.sep}`))
    .map((f) => fs.readFileSync(f, 'utf8'))
    .join('\n');
  const named = new Set([...ALL_DOCS.values()].flatMap((text) => [...text.matchAll(/\bMESHID_[A-Z0-9_]*[A-Z0-9]\b/g)].map((m) => m[0])));
  assert.ok(named.size >= 10, `found only ${named.size} MESHID_ variables in the docs`);
  assert.deepEqual([...named].filter((v) => !sources.includes(v)), []);
});

test('every config key of either daemon is named in the README or docs/*.md, as the key or its flag', () => {
  const docs = [...ALL_DOCS.values()].join('\n');
  const keys = [...Object.keys(SERVER_KEYS), ...Object.keys(AGENT_KEYS), ...Object.keys(SDS_KEYS), ...Object.keys(HEALTH_CHECKS_KEYS)];
  const missing = keys.filter((k) => !new RegExp(`\`(?:[a-z_]+\\.)?${k}[\`:]`).test(docs) && !docs.includes(`--${k.replace(/_/g, '-')}`));
  assert.deepEqual(missing, []);
});

test('the SPIRE settings the README says are refused are refused as SPIRE settings, saying what to do instead', () => {
  // The sentences that list them: "(spire-server's `bind_port`, …) is refused saying what to set instead" and
  // "spire-agent 1.15's other settings (`availability_target`, …) and spire-server's (…) are refused saying …".
  const sentences = [...README.matchAll(/(?:\([^()]*\.\.\.\)[^()]*?)+refused saying what/g)].map((m) => m[0]);
  assert.equal(sentences.length, 2, 'the README\'s two sentences naming refused SPIRE settings');
  const keys = [...new Set(sentences.flatMap((s) => [...s.matchAll(/`([a-z][a-z0-9_]*)`/g)].map((m) => m[1]!)))];
  assert.ok(keys.length >= 10, `found only ${keys.length} keys: ${keys.join(', ')}`);
  const notRefused: string[] = [];
  for (const key of keys) {
    const messages = (['server', 'agent'] as const).map((daemon) => {
      const file = path.join(dir, `spire-${daemon}-${key}.json`);
      fs.writeFileSync(file, JSON.stringify({ ...(daemon === 'server' ? { trust_domain: 'example.org' } : { server_address: 'h:1' }), [key]: 1 }));
      try {
        if (daemon === 'server') serverConfigFrom(['--config', file], {});
        else agentConfigFrom(['--config', file], {});
        return 'accepted';
      } catch (err) {
        return (err as Error).message;
      }
    });
    if (!messages.some((m) => m.includes(`"${key}" is a SPIRE setting meshid has no counterpart for: `))) notRefused.push(`${key}: ${messages.join(' | ')}`);
  }
  assert.deepEqual(notRefused, []);
});

test('docs/ARCHITECTURE.md\'s "CLI entry (meshid-server run | …)" lists every top-level command --help has', async () => {
  const architecture = DOCS.get('docs/ARCHITECTURE.md')!;
  const m = /CLI entry \(meshid-server ([a-z0-9| \n-]+)\)/.exec(architecture);
  assert.ok(m !== null, 'no "CLI entry (meshid-server …)" line in docs/ARCHITECTURE.md');
  const listed = m[1]!.split('|').map((w) => w.trim()).sort();
  assert.deepEqual(listed, subcommands(await help('meshid-server', [])).sort());
});

test('the server defaults the README states are the ones the server applies', () => {
  const defaults = /Defaults:[\s\S]*?A duration is seconds/.exec(README)?.[0].replace(/\s+/g, ' ');
  assert.ok(defaults !== undefined, 'no "Defaults: …" passage in README.md');
  const d = SERVER_DEFAULTS;
  const stated = [
    `one datacenter, \`${d.datacenter}\``,
    `X.509-SVIDs ${d.default_x509_svid_ttl}`,
    `JWT-SVIDs ${d.default_jwt_svid_ttl}`,
    `intermediates ${d.intermediate_ttl}`,
    `join tokens ${d.join_token_ttl}`,
    `CA keys ECDSA P-${d.ca_key_type.replace('ec-p', '')}`,
  ];
  assert.deepEqual(stated.filter((s) => !defaults.includes(s)), [], defaults);
  const keysWithout = README.replace(/\s+/g, ' ');
  for (const [key, value] of [['jwt_key_ttl', d.jwt_key_ttl], ['root_activation_delay', d.root_activation_delay]] as const) {
    assert.ok(keysWithout.includes(`\`${key}\` (${value}`), `README gives ${key}'s default as ${value}`);
  }
});

test('"Limits of the agent API port" gives the bounds the server applies', () => {
  const section = /## Limits of the agent API port\n([\s\S]*?)\n## /.exec(README)?.[1]?.replace(/\s+/g, ' ');
  assert.ok(section !== undefined, 'no "Limits of the agent API port" section in README.md');
  const l = DEFAULT_CONNECTION_LIMITS;
  const n = (x: number): string => x.toLocaleString('en-US');
  const s = (ms: number): string => `${ms / 1000} s`;
  const stated = [
    `${s(l.handshakeMs)} to finish it`,
    `${n(l.handshakesTotal)} such connections at once`,
    `at most ${n(AGENT_API_MAX_CONCURRENT_STREAMS)} calls open at once`,
    `${n(l.unauthenticatedStreams)} calls at once`,
    `${n(l.unauthenticatedPerSource)} such connections per source address`,
    `${n(l.unauthenticatedTotal)} in all`,
    `closed after ${s(l.unauthenticatedIdleMs)} without a call`,
    `after ${s(l.unauthenticatedMaxAgeMs)} in any case (calls then still in progress get ${s(l.unauthenticatedGraceMs)})`,
    `cut ${s(l.evictedGraceMs)} later`,
    `each agent may hold ${n(l.perAgent)} connections`,
  ];
  assert.deepEqual(stated.filter((x) => !section.includes(x)), []);
});

test('the agent settings\' defaults and bounds the README states are the ones the agent applies', () => {
  const text = README.replace(/\s+/g, ' ');
  const n = (x: number): string => x.toLocaleString('en-US');
  const stated = [
    `\`jwt_svid_cache_size\` (${n(DEFAULT_JWT_CACHE_SIZE)};`,
    `(at most ${n(MAX_JWT_SVID_CACHE_SIZE)})`,
    `\`max_connections_per_uid\` connections (default ${n(DEFAULT_MAX_CONNECTIONS_PER_UID)}, at most ${n(MAX_CONNECTIONS_PER_UID_SETTING)})`,
    `\`max_calls_per_uid\` calls open at once (default ${n(DEFAULT_MAX_CALLS_PER_UID)},`,
    `at most ${n(MAX_CALLS_PER_UID_SETTING)};`,
  ];
  assert.deepEqual(stated.filter((x) => !text.includes(x)), []);
});
