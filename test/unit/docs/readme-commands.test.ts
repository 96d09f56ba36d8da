/**
 * The README is the operator guide: the command lines it shows must parse, every daemon setting must be findable in
 * it, and its example configs must be accepted. Checked against the executables' own --help and config compilers, so
 * a renamed flag or key fails here instead of in an operator's shell.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { packageRoot } from '../../../src/common/paths.js';
import { RUN_FLAGS as SERVER_RUN_FLAGS, serverConfigFrom } from '../../../src/server/cli/run-config.js';
import { RUN_FLAGS as AGENT_RUN_FLAGS, agentConfigFrom } from '../../../src/agent/cli/run-config.js';
import { AGENT_MAIN } from '../../support/cluster.js';
import { runNode, SERVER_MAIN } from '../../support/server-process.js';

const README = fs.readFileSync(path.join(packageRoot, 'README.md'), 'utf8');
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
