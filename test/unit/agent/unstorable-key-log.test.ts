/**
 * UnstorableKeyLog on its own: a key left out of the saved agent state is logged once per trust domain and key.
 * agent-store.test.ts covers one trust domain through real saves.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { createLogger } from '../../../src/common/log.js';
import { UnstorableKeyLog } from '../../../src/agent/storage/unstorable-key-log.js';
import { parseLogLines } from '../../support/log-lines.js';

test('the same key ID in two trust domains (kids are chosen by each domain) is two keys left out: each trust domain is named once', () => {
  const raw: string[] = [];
  const log = new UnstorableKeyLog(createLogger({ name: 'test', level: 'info', pretty: false, destination: new Writable({ write: (c, _e, cb) => (raw.push(String(c)), cb()) }) }));
  for (let save = 0; save < 3; save++) {
    log.report({ trustDomain: 'partner.example', id: 'jwt:key-1', problem: 'JWT authority key-1 of partner.example has a dsa key' });
    log.report({ trustDomain: 'other.example', id: 'jwt:key-1', problem: 'JWT authority key-1 of other.example has a dsa key' });
  }
  const lines = parseLogLines(raw.join(''));
  assert.deepEqual(lines.map((l) => l['trustDomain']), ['partner.example', 'other.example']);
});
