/** readJsonConfigObject and closestConfigKey on files that are not what they should be (config-file.ts). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { closestConfigKey, readJsonConfigObject } from '../../../src/common/config-file.js';

function withFile(t: { after: (fn: () => void) => void }, content: string | Buffer): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshid-config-file-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'server.json');
  fs.writeFileSync(file, content);
  return file;
}

test('a "server" section that is not an object is refused by name', (t) => {
  for (const value of ['"example.org"', '["a"]', 'null', '1']) {
    const file = withFile(t, `{"server": ${value}}`);
    assert.throws(() => readJsonConfigObject(file, 'server'), { message: `config file ${file}: "server" must be an object` }, value);
  }
});

test('a UTF-16 file is refused as UTF-16 in either byte order', (t) => {
  const le = withFile(t, Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from('{}', 'utf16le')]));
  const be = withFile(t, Buffer.concat([Buffer.from([0xfe, 0xff]), Buffer.from('{}', 'utf16le').swap16()]));
  for (const file of [le, be]) assert.throws(() => readJsonConfigObject(file, 'server'), { message: `config file ${file} is UTF-16: save it as UTF-8` });
});

test('HCL is recognised after a /* */ comment block and when it starts with a labelled block', (t) => {
  const hcl = (file: string) => (err: Error): boolean => err.message.startsWith(`config file ${file} is HCL`);
  const blockComment = withFile(t, '/*\n * spire-server settings\n */\nserver {\n  trust_domain = "example.org"\n}\n');
  assert.throws(() => readJsonConfigObject(blockComment, 'server'), hcl(blockComment));
  const labelled = withFile(t, 'DataStore "sql" {\n  plugin_data {\n  }\n}\n');
  assert.throws(() => readJsonConfigObject(labelled, 'server'), hcl(labelled));
});

test('a key that starts two known keys suggests neither rather than guessing', () => {
  assert.equal(closestConfigKey('ca', ['ca_ttl', 'ca_key_type', 'data_dir']), undefined);
  assert.equal(closestConfigKey('ca', ['ca_ttl', 'data_dir']), 'ca_ttl');
});
