import { test } from 'node:test';
import assert from 'node:assert/strict';
import { firstDuplicateKey, type DuplicateKey } from '../../../src/common/json-duplicate-key.js';

const found = (key: string, within: string, firstLine: number, line: number): DuplicateKey => ({ key, within, firstLine, line });

test('finds a key given twice in one object, with the object\'s path and both lines', () => {
  const cases: Array<[string, string, DuplicateKey | undefined]> = [
    ['top level', '{\n  "trust_domain": "a.org",\n  "x": 1,\n  "trust_domain": "b.org"\n}', found('trust_domain', '', 2, 4)],
    ['nested object', '{"sds": {\n"default_svid_name": "a",\n"default_svid_name": "b"}}', found('default_svid_name', 'sds', 2, 3)],
    ['object in an array', '{"federates_with": [{"trust_domain": "a"}, {"trust_domain": "b", "x": [1, 2], "trust_domain": "c"}]}', found('trust_domain', 'federates_with[1]', 1, 1)],
    ['an array in an array', '[[1, {"a": 1}], [{"b": 1, "b": 2}]]', found('b', '[1][0]', 1, 1)],
    ['the same key after decoding escapes', '{"ab": 1, "a\\u0062": 2}', found('ab', '', 1, 1)],
    ['an escaped quote inside a key', '{"a\\"b": 1, "a\\"b": 2}', found('a"b', '', 1, 1)],
    ['the empty key', '{"": 1, "": 2}', found('', '', 1, 1)],
    ['__proto__, which JSON.parse makes an own key', '{"__proto__": 1, "__proto__": 2}', found('__proto__', '', 1, 1)],
    ['a path through a key that is no identifier', '{"a.b": {"c": 1, "c": 2}}', found('c', '"a.b"', 1, 1)],
    ['the first of two duplicates in text order', '{"o": {"x": 1, "x": 2}, "o": 3}', found('x', 'o', 1, 1)],
    ['no duplicate: the same key in sibling objects', '{"a": {"k": 1}, "b": {"k": 2}, "c": [{"k": 1}, {"k": 2}]}', undefined],
    ['no duplicate: the same key at two depths', '{"k": {"k": {"k": 1}}}', undefined],
    ['no duplicate: a value equal to a key', '{"a": "a", "b": ["a", "b"], "c": "b"}', undefined],
    ['no duplicate: keys equal only up to case or escapes that differ', '{"a": 1, "A": 2, "\\u0041b": 3, "ab": 4}', undefined],
    ['no duplicate: braces, colons, commas and quotes inside strings', '{"s": "{\\"s\\": 1, \\"s\\": 2}", "t": "[,:]", "u": "\\\\"}', undefined],
    ['no duplicate: a string ending in a backslash before the next key', '{"a": "x\\\\", "b": "\\\\\\\\", "c": 1}', undefined],
    ['no duplicate: not an object at all', '[1, "a", "a", {"a": 1}]', undefined],
    ['no duplicate: a scalar document', '"a"', undefined],
  ];
  for (const [name, text, expected] of cases) {
    JSON.parse(text); // every case is valid JSON, as the scanner requires
    assert.deepEqual(firstDuplicateKey(text), expected, name);
  }
});

test('with ignoreCase, keys equal up to case are the same key (spire-server files, read as Go reads them)', () => {
  const text = '{"entries": [{\n"spiffe_id": "a",\n"SPIFFE_ID": "b"}]}';
  assert.equal(firstDuplicateKey(text), undefined, 'two keys by default');
  assert.deepEqual(firstDuplicateKey(text, { ignoreCase: true }), found('SPIFFE_ID', 'entries[0]', 2, 3));
  assert.equal(firstDuplicateKey('{"a": {"k": 1}, "c": {"K": 1}, "b": [{"k": 1}, {"K": 1}]}', { ignoreCase: true }), undefined, 'siblings still apart');
});

test('lines count from 1 and follow CRLF line ends and blank lines', () => {
  assert.deepEqual(firstDuplicateKey('{\r\n\r\n  "a": 1,\r\n  "b": "\\n\\n",\r\n  "a": 2\r\n}'), found('a', '', 3, 5));
});

/**
 * Random documents against a reference built from the tree they are written from: keys drawn from spellings that
 * decode alike or hide JSON punctuation, random whitespace and line breaks, nesting through objects and arrays.
 */
test('agrees with a reference on random documents with and without duplicates', () => {
  // [how it is written, what it decodes to]
  const KEYS: Array<[string, string]> = [
    ['"a"', 'a'], ['"\\u0061"', 'a'], ['"b"', 'b'], ['"\\"{"', '"{'], ['"}"', '}'], ['"\\\\"', '\\'], ['","', ','],
    ['":"', ':'], ['""', ''], ['"\\n"', '\n'], ['"é"', 'é'], ['"\\u00e9"', 'é'], ['"[0]"', '[0]'],
  ];
  let seed = 12345;
  const random = (n: number): number => {
    // xorshift32: repeatable, so a failure can be replayed
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return (seed >>> 0) % n;
  };
  const space = (): string => [' ', '', '\n', '  ', '\r\n', '\t'][random(6)]!;

  for (let round = 0; round < 2000; round++) {
    let text = '';
    let line = 1;
    let expected: DuplicateKey | undefined;
    const emit = (s: string): void => {
      text += s;
      line += (s.match(/\n/g) ?? []).length;
    };
    const pathName = (key: string): string => (/^[A-Za-z_][A-Za-z0-9_]*$/.test(key) ? key : JSON.stringify(key));
    const value = (path: string, depth: number): void => {
      const kind = depth > 3 ? random(3) : random(5);
      if (kind === 0) emit(String(random(100)));
      else if (kind === 1) emit(KEYS[random(KEYS.length)]![0]);
      else if (kind === 2) emit(['true', 'false', 'null'][random(3)]!);
      else if (kind === 3) {
        emit('[' + space());
        const n = random(4);
        for (let i = 0; i < n; i++) {
          if (i > 0) emit(',' + space());
          value(`${path}[${i}]`, depth + 1);
        }
        emit(space() + ']');
      } else {
        emit('{' + space());
        const seen = new Map<string, number>();
        const n = random(5);
        for (let i = 0; i < n; i++) {
          if (i > 0) emit(',' + space());
          const [written, decoded] = KEYS[random(KEYS.length)]!;
          const first = seen.get(decoded);
          if (first !== undefined && expected === undefined) expected = found(decoded, path, first, line);
          if (first === undefined) seen.set(decoded, line);
          emit(written + space() + ':' + space());
          value(path === '' ? pathName(decoded) : `${path}.${pathName(decoded)}`, depth + 1);
        }
        emit(space() + '}');
      }
    };
    emit(space());
    value('', 0);
    emit(space());
    JSON.parse(text);
    assert.deepEqual(firstDuplicateKey(text), expected, `round ${round}:\n${text}`);
  }
});
