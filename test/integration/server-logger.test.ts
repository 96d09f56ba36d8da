/**
 * `meshid-server logger get|set|reset` (SPIRE's Logger API) against a real server: the level changes what the running
 * server writes, and a reset goes back to the level it started with.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { tempDir } from '../support/server-kit.js';
import { startServerProcess } from '../support/server-process.js';
import { teardown } from '../support/teardown.js';
import { until } from '../support/until.js';

test('logger set -level debug makes the running server write debug lines, logger reset stops them; logger get shows both levels', async (t) => {
  const { dir, cleanup } = tempDir('meshid-server-logger-');
  teardown(t).after(cleanup);
  // Started at info (startServerProcess sets MESHID_LOG_LEVEL=info).
  const s = await startServerProcess(dir);
  teardown(t).after(() => s.stop());
  const ok = async (args: string[]): Promise<string> => {
    const r = await s.cli(args);
    assert.equal(r.code, 0, `${args.join(' ')}: ${r.err}`);
    return r.out;
  };
  // A refused admin call is logged at debug level ("request refused"), naming what was refused.
  const refusedLine = (id: string): RegExp => new RegExp(`"level":20.*"msg":"request refused".*${id}|"level":20.*${id}.*"msg":"request refused"`);
  const refuse = async (id: string): Promise<void> => assert.equal((await s.cli(['ca', 'taint', '--id', id])).code, 1);

  // spire-server's text, to the byte: 12-character labels unpadded, then a blank line.
  assert.equal(await ok(['logger', 'get']), 'Logger Level : info\nLaunch Level : info\n\n');
  await refuse('int-before-set');

  // SPIRE's -level spelling and its upper-case level names.
  assert.deepEqual(JSON.parse(await ok(['logger', 'set', '-level', 'DEBUG', '--output', 'json'])), { current_level: 'DEBUG', launch_level: 'INFO' });
  assert.deepEqual(JSON.parse(await ok(['logger', 'get', '--output', 'json'])), { current_level: 'DEBUG', launch_level: 'INFO' });
  await refuse('int-while-debug');
  await until('the debug line of the refused call', () => (refusedLine('int-while-debug').test(s.output()) ? true : undefined));

  assert.equal(await ok(['logger', 'set', '--level', 'error']), 'Logger Level : error\nLaunch Level : info\n\n');
  // logrus's name for pino's warn in text, as spire-server prints it, which `-level` takes too; SPIRE's enum in JSON.
  assert.equal(await ok(['logger', 'set', '--level', 'warn']), 'Logger Level : warning\nLaunch Level : info\n\n');
  assert.deepEqual(JSON.parse(await ok(['logger', 'get', '--output', 'json'])), { current_level: 'WARN', launch_level: 'INFO' });
  await ok(['logger', 'set', '--level', 'error']);
  assert.equal(await ok(['logger', 'set', '-level', 'Warning']), 'Logger Level : warning\nLaunch Level : info\n\n');
  assert.deepEqual(JSON.parse(await ok(['logger', 'get', '--output', 'json'])), { current_level: 'WARN', launch_level: 'INFO' });
  // logrus's panic, which pino lacks, is its nearest level, fatal (SPIRE's FATAL in JSON).
  assert.equal(await ok(['logger', 'set', '--level', 'PANIC']), 'Logger Level : fatal\nLaunch Level : info\n\n');
  assert.deepEqual(JSON.parse(await ok(['logger', 'get', '--output', 'json'])), { current_level: 'FATAL', launch_level: 'INFO' });
  assert.equal(await ok(['logger', 'reset']), 'Logger Level : info\nLaunch Level : info\n\n');
  await refuse('int-after-reset');
  // Lines are written in order: once a line logged after the refusal is out, its debug line would be too.
  await ok(['logger', 'set', '--level', 'info']);
  await until('the info line of the last set', () => (/"level":30.*"msg":"log level set".*"to":"info"|"level":30.*"to":"info".*"msg":"log level set"/.test(s.output()) ? true : undefined));
  assert.doesNotMatch(s.output(), refusedLine('int-after-reset'), 'no debug line after the reset');
  assert.doesNotMatch(s.output(), refusedLine('int-before-set'), 'nor before the set');

  const bad = await s.cli(['logger', 'set', '--level', 'loud']);
  assert.equal(bad.code, 1);
  assert.match(bad.err, /loud/);
  assert.equal((await s.cli(['logger', 'set'])).code, 1, 'a level is required');
});
