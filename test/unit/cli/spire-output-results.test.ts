/** spire-output.ts beyond the shapes: which refusals become a Batch result, and fields that must not be swapped. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { aborted, notFound, unavailable } from '../../../src/common/errors.js';
import { refusalAsBatchResult, spireEntry, spireSpiffeId } from '../../../src/server/cli/spire-output.js';

function io() {
  const stdout = new PassThrough();
  const chunks: Buffer[] = [];
  stdout.on('data', (c: Buffer) => chunks.push(c));
  return { io: { stdout, stderr: new PassThrough(), env: {} }, printed: () => Buffer.concat(chunks).toString() };
}

test('with --output json an item refusal (ABORTED too) is printed as the item\'s result, then thrown; an outage is not', async () => {
  const refused = io();
  await assert.rejects(refusalAsBatchResult(true, refused.io, { trust_domain: 'partner.org' }, async () => Promise.reject(aborted('a concurrent change won'))), /concurrent/);
  const doc = JSON.parse(refused.printed()) as { results: Array<{ status: { code: number; message: string }; trust_domain: string }> };
  assert.deepEqual(doc.results, [{ status: { code: 10, message: 'a concurrent change won' }, trust_domain: 'partner.org' }]);

  const down = io();
  await assert.rejects(refusalAsBatchResult(true, down.io, {}, async () => Promise.reject(unavailable('server down'))));
  assert.equal(down.printed(), '', 'no result for a call that never reached the item');
});

test('without --output json nothing is printed for a refusal: the error line alone', async () => {
  const pretty = io();
  await assert.rejects(refusalAsBatchResult(false, pretty.io, { trust_domain: 'partner.org' }, async () => Promise.reject(notFound('no such bundle'))), /no such bundle/);
  assert.equal(pretty.printed(), '');
});

test("an entry's X.509 and JWT TTLs go to their own fields", () => {
  const e = spireEntry({ id: 'e', spiffe_id: 'spiffe://example.org/a', x509_svid_ttl: 3600, jwt_svid_ttl: 300 });
  assert.deepEqual([e['x509_svid_ttl'], e['jwt_svid_ttl']], [3600, 300]);
});

test('an ID of another scheme is printed whole as the path, not split as if it were a SPIFFE ID', () => {
  assert.deepEqual(spireSpiffeId('https://example.org/web'), { trust_domain: '', path: 'https://example.org/web' });
});
