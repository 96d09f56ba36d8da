/**
 * meshid-agent and meshid-server as shipped start from the V8 code cache scripts/bundle.mjs made for each bundle
 * (one loader, scripts/code-cache-loader.mjs), and without it — absent, made for another bundle, refused by V8,
 * damaged — start all the same from the bundle's source. With --enable-source-maps the bundle is loaded so that its
 * source map applies. Both bundles are ASCII.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { crc32 } from 'node:zlib';
import { packageRoot } from '../../src/common/paths.js';
import { AGENT_MAIN } from '../support/cluster.js';
import { runNode, SERVER_MAIN, startServerProcess } from '../support/server-process.js';
import { tempDir } from '../support/server-kit.js';
import { teardown } from '../support/teardown.js';

const REPORT = { MESHID_CODE_CACHE_REPORT: '1', NODE_OPTIONS: '' };
/** The cache's layout (scripts/code-cache-loader.mjs): the bundle's SHA-256, the CRC-32 of V8's data, V8's data. */
const DATA_AT = 36;
const shipped = path.dirname(AGENT_MAIN);

/**
 * dist/bin's files of `name` copied to a dir beside it (the bundle finds the package from its own place), then
 * `change`d.
 */
async function withCopy(change: (dir: string) => void, check: (main: string) => Promise<void>, name = 'meshid-agent'): Promise<void> {
  const dir = fs.mkdtempSync(path.join(packageRoot, 'dist', 'code-cache-test-'));
  try {
    for (const file of [`${name}.mjs`, `${name}.cjs`, `${name}.cjs.cache`]) fs.copyFileSync(path.join(shipped, file), path.join(dir, file));
    change(dir);
    await check(path.join(dir, `${name}.mjs`));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function versionLoadedAs(main: string, name = 'meshid-agent'): Promise<string> {
  const r = await runNode(main, ['--version'], REPORT);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, new RegExp(`^${name} \\S+\\n$`));
  return r.err;
}

test('meshid-agent as built starts from the code cache made for its bundle', async () => {
  assert.equal(await versionLoadedAs(AGENT_MAIN), 'code cache: used\n');
});

test('meshid-server as built starts from the code cache made for its bundle, for an admin command and for run', async (t) => {
  assert.equal(path.basename(SERVER_MAIN), 'meshid-server.mjs');
  assert.equal(await versionLoadedAs(SERVER_MAIN, 'meshid-server'), 'code cache: used\n');
  const { dir, cleanup } = tempDir('meshid-server-code-cache-');
  teardown(t).after(cleanup);
  const s = await startServerProcess(dir, undefined, REPORT);
  teardown(t).after(() => s.stop());
  assert.match(s.output(), /^code cache: used\n/);
  const entries = await runNode(SERVER_MAIN, ['entry', 'show', '--admin-socket', s.adminSocket], REPORT);
  assert.deepEqual([entries.code, entries.out, entries.err], [0, 'Found 0 entries\n', 'code cache: used\n']);
});

test('a damaged meshid-server code cache is not offered to V8: the server starts from its bundle source and serves', async () => {
  await withCopy(
    (dir) => {
      const cache = path.join(dir, 'meshid-server.cjs.cache');
      const bytes = fs.readFileSync(cache);
      for (let i = DATA_AT + 100; i < DATA_AT + 164; i++) bytes[i] = bytes[i]! ^ 0x5a;
      fs.writeFileSync(cache, bytes);
    },
    async (main) => {
      assert.equal(await versionLoadedAs(main, 'meshid-server'), 'code cache: damaged\n');
      const { dir, cleanup } = tempDir('meshid-server-code-cache-damaged-');
      try {
        const s = await startServerProcess(dir, undefined, REPORT, main);
        try {
          assert.match(s.output(), /^code cache: damaged\n/);
          const r = await runNode(main, ['entry', 'show', '--admin-socket', s.adminSocket], REPORT);
          assert.deepEqual([r.code, r.out, r.err], [0, 'Found 0 entries\n', 'code cache: damaged\n']);
        } finally {
          await s.stop();
        }
      } finally {
        cleanup();
      }
    },
    'meshid-server',
  );
});

test("meshid-agent's and meshid-server's bundles are ASCII, so that V8 holds their source one byte per character", () => {
  const code = fs.readdirSync(shipped).filter((f) => /\.(cjs|mjs)$/.test(f));
  assert.deepEqual(code.sort(), ['meshid-agent.cjs', 'meshid-agent.mjs', 'meshid-server.cjs', 'meshid-server.mjs']);
  for (const file of code) {
    const bytes = fs.readFileSync(path.join(shipped, file));
    const at = bytes.findIndex((b) => b > 0x7f);
    assert.equal(at, -1, `${file}: a non-ASCII byte at ${at}: ${bytes.subarray(Math.max(0, at - 60), at + 20).toString('utf8')}`);
  }
});

test('meshid-agent without its code cache starts from the bundle source', async () => {
  await withCopy(
    (dir) => fs.rmSync(path.join(dir, 'meshid-agent.cjs.cache')),
    async (main) => assert.equal(await versionLoadedAs(main), 'code cache: absent\n'),
  );
});

test('a code cache made for another bundle is not offered to V8: a changed bundle runs as changed', async () => {
  await withCopy(
    // The embedded version's first character changed: the same length, so V8's own check (which compares the source's
    // length, not its text) would take the cache and run the old code. Not ASCII: the bundle is decoded as UTF-8.
    (dir) => {
      const bundle = path.join(dir, 'meshid-agent.cjs');
      const source = fs.readFileSync(bundle, 'utf8');
      const version = /return true \? "(\d)/.exec(source);
      assert.ok(version, 'the bundle embeds its version');
      fs.writeFileSync(bundle, source.replace(version[0], version[0].slice(0, -1) + 'é'));
    },
    async (main) => {
      const r = await runNode(main, ['--version'], REPORT);
      assert.equal(r.code, 0, r.err);
      assert.match(r.out, /^meshid-agent é\.\S+\n$/);
      assert.equal(r.err, 'code cache: made for another bundle\n');
    },
  );
});

test('a code cache V8 refuses (its header changed, the checksum made to match) falls back to the bundle source quietly', async () => {
  await withCopy(
    (dir) => {
      const cache = path.join(dir, 'meshid-agent.cjs.cache');
      const bytes = fs.readFileSync(cache);
      // V8's own header (magic number, version and flag hashes, lengths), which V8 checks.
      for (let i = DATA_AT; i < DATA_AT + 24; i++) bytes[i] = bytes[i]! ^ 0xff;
      bytes.writeUInt32BE(crc32(bytes.subarray(DATA_AT)), 32);
      fs.writeFileSync(cache, bytes);
    },
    async (main) => assert.equal(await versionLoadedAs(main), 'code cache: rejected by V8\n'),
  );
});

test('a code cache damaged past V8\'s header (which a release V8 does not check: it crashed in V8_Fatal or SIGSEGV) is not offered to V8: the agent starts from the bundle source', async () => {
  for (const at of [DATA_AT + 100, DATA_AT + 200_000]) {
    await withCopy(
      (dir) => {
        const cache = path.join(dir, 'meshid-agent.cjs.cache');
        const bytes = fs.readFileSync(cache);
        for (let i = at; i < at + 64; i++) bytes[i] = bytes[i]! ^ 0x5a;
        fs.writeFileSync(cache, bytes);
      },
      async (main) => assert.equal(await versionLoadedAs(main), 'code cache: damaged\n', `bytes flipped at ${at}`),
    );
  }
});

test('with --enable-source-maps meshid-agent loads its bundle with the source map, which names the TypeScript sources', async () => {
  const dir = fs.mkdtempSync(path.join(packageRoot, 'dist', 'code-cache-test-'));
  try {
    // Preloaded: at exit, asks Node for the source map of the bundle it ran.
    const probe = path.join(dir, 'probe.mjs');
    const bundle = AGENT_MAIN.replace(/\.mjs$/, '.cjs');
    fs.writeFileSync(
      probe,
      `import { findSourceMap } from 'node:module';\n` +
        `process.on('exit', () => process.stderr.write('sources: ' + (findSourceMap(${JSON.stringify(bundle)})?.payload.sources.filter((s) => s.endsWith('agent/main.ts')).length ?? 'no map') + '\\n'));\n`,
    );
    const r = await runNode(AGENT_MAIN, ['--version'], { ...REPORT, NODE_OPTIONS: `--enable-source-maps --import=${probe}` });
    assert.equal(r.code, 0, r.err);
    assert.equal(r.err, 'code cache: not used (source maps enabled)\nsources: 1\n');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
