/**
 * A server-svid.json that is no longer valid JSON (a bad block, a hand edit) is replaced by a new SVID, with a warning
 * that must not quote the file: it holds the server's private key, and V8's JSON.parse message quotes the text
 * around the fault ("Unexpected token 'B', ..."x": BAQQgSECRE"...").
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { startCluster, startServerProcess, type Cluster } from '../support/cluster.js';
import { parseLogLines } from '../support/log-lines.js';

let cluster: Cluster;

before(async () => {
  cluster = await startCluster('meshid-server-svid-unreadable-');
});

after(async () => {
  await cluster?.cleanup();
});

test('a corrupt server SVID file is replaced, and the warning quotes none of the key it holds', async () => {
  const file = path.join(cluster.dir, 'server', 'data', 'server-svid.json');
  const address = cluster.server.address();
  await cluster.server.stop();
  const text = fs.readFileSync(file, 'utf8');
  const saved = JSON.parse(text) as { key_pem: string };
  const keyDer = crypto.createPrivateKey(saved.key_pem).export({ type: 'pkcs8', format: 'der' }).toString('base64');
  // The JSON string cut inside the key's secret part (after PKCS#8's fixed 48 characters of header), and the rest of
  // the key bare, where JSON wants a value (what a damaged block can make of it).
  // A letter (not one starting true, false or null) must come first, or JSON would read a number and say no more.
  let from = 52;
  while (!/[A-Za-eg-mo-su-z]/.test(keyDer[from]!)) from++;
  const cut = text.indexOf(keyDer.slice(from, 64));
  assert.ok(from < 60, 'a letter in the first line of the key');
  assert.ok(cut > 0, 'the key is in the file as base64');
  fs.writeFileSync(file, `${text.slice(0, cut)}", "x": ${text.slice(cut)}`);
  let refused: unknown;
  try {
    JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    refused = err;
  }
  assert.ok(refused instanceof SyntaxError && refused.message.includes(keyDer.slice(from, from + 4)), `V8 quotes the key here: ${String(refused)}`);

  await startServerProcess(cluster, address);
  const output = cluster.server.output!();
  const warning = parseLogLines(output).find((l) => l.msg === 'the saved server SVID cannot be read; issuing a new one');
  assert.ok(warning !== undefined, output);
  assert.match(String(warning['reason']), /not valid JSON/);
  for (let i = 0; i + 8 <= keyDer.length; i += 4) {
    assert.ok(!output.includes(keyDer.slice(i, i + 8)), `the server log quotes the key (${keyDer.slice(i, i + 8)} at ${i}):\n${output}`);
  }
  // And it runs on a new SVID, saved over the corrupt file.
  assert.doesNotThrow(() => JSON.parse(fs.readFileSync(file, 'utf8')));
});
