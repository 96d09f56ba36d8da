import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isMeshidError } from '../../../src/common/errors.js';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { readJsonConfigObject } from '../../../src/common/config-file.js';
import { isJsonObject, jsonSyntaxProblem, parseJsonObject } from '../../../src/common/json-object.js';

test('parseJsonObject returns objects and names what is wrong with anything else, without echoing it', () => {
  assert.deepEqual(parseJsonObject('{"a":1}', 'state'), { a: 1 });
  for (const [text, reason] of [['{"a":', 'is not valid JSON'], ['[1]', 'is not a JSON object'], ['null', 'is not a JSON object'], ['"secret"', 'is not a JSON object']]) {
    assert.throws(() => parseJsonObject(text!, 'state'), (e: unknown) => isMeshidError(e, 'invalid_argument') && e.message === `state ${reason}` && !e.message.includes('secret'));
  }
  assert.equal(isJsonObject({}), true);
  assert.equal(isJsonObject([]), false);
  assert.equal(isJsonObject(null), false);
});

test('a config file with an unquoted join token is refused without quoting any of it, and a fault with a position gets its line and column', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshid-json-problem-'));
  try {
    const file = path.join(dir, 'agent.json');
    fs.writeFileSync(file, '{\n  "join_token": a166f7a482c4d1e9\n}\n');
    // V8's own message quotes '..."n_token": a166f7a482"...': ten characters of the token, on stderr and in logs.
    assert.throws(() => readJsonConfigObject(file, 'agent'), (e: unknown) => isMeshidError(e, 'invalid_argument') && /is not valid JSON: /.test(e.message) && !/a166f7|a1"/.test(e.message));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const problem = (text: string): string => {
    try {
      JSON.parse(text);
    } catch (err) {
      return jsonSyntaxProblem(err, text);
    }
    throw new Error('parsed');
  };
  assert.equal(problem('{\n  "a": 1\n  "b": 2\n}'), "Expected ',' or '}' after property value at line 3, column 3");
  assert.equal(problem('{"a": '), 'it ends before the JSON does');
});
