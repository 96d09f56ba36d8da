import { test } from 'node:test';
import assert from 'node:assert/strict';
import { joinTokenInText } from '../../../src/common/join-token-text.js';

const TOKEN = '0123456789abcdef0123456789abcdef01234567';
/** What `meshid-server token generate` prints, as `token generate > file` saves it. */
const GENERATED = `Token: ${TOKEN}\nExpires at: 2026-12-02T05:00:00.000Z\nDatacenter: east\n`;

test("saved text holds the token alone or all of token generate's output: either way the token is read", () => {
  const cases: Array<[string, string]> = [
    [TOKEN, 'the token alone'],
    [` ${TOKEN}\r\n`, 'with spaces and a CRLF'],
    [`\uFEFF${TOKEN}\n`, 'after a byte order mark'],
    [GENERATED, "token generate's whole output"],
    [GENERATED.replaceAll('\n', '\r\n'), 'saved with CRLFs'],
    [`Token: ${TOKEN}\n`, 'its Token: line alone'],
    [`\n  Token:   ${TOKEN}  \n\n`, 'between blank lines'],
  ];
  for (const [text, what] of cases) assert.deepEqual(joinTokenInText(text), { token: TOKEN }, what);
  const uuid = '6f1c2d4e-3b5a-4c7d-9e8f-0a1b2c3d4e5f';
  assert.deepEqual(joinTokenInText(`Token: ${uuid}\n`), { token: uuid }, "spire-server's form, a UUID");
});

test('saved text that is no one token is refused rather than sent whole: two tokens, other lines, words around it', () => {
  const cases: Array<[string, string]> = [
    [`${TOKEN}\n${TOKEN}\n`, 'two tokens'],
    [`${GENERATED}${GENERATED}`, "token generate's output twice"],
    [`Token: ${TOKEN}\nsomething else\n`, 'a line token generate does not print'],
    [`Token: ${TOKEN} extra\n`, 'more than the token after Token:'],
    [`token ${TOKEN}\n`, 'words before the token'],
    [`{\n  "value": "${TOKEN}",\n  "expires_at": "1796187600"\n}\n`, "token generate's --output json"],
    ['Expires at: 2026-12-02T05:00:00.000Z\nDatacenter: east\n', 'no Token: line'],
  ];
  for (const [text, what] of cases) assert.deepEqual(joinTokenInText(text), { problem: 'not-one-token' }, what);
  for (const text of ['', '\n', ' \r\n\t\n', 'Token:\n', 'Token: \nExpires at: never\n']) assert.deepEqual(joinTokenInText(text), { problem: 'empty' }, JSON.stringify(text));
});
