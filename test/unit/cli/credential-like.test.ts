/**
 * Which values an error message does not quote back (credential-like.ts): join tokens and JWT-SVIDs in the forms an
 * operator may paste them, and nothing much wider, since a mistyped name or path must still be shown.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { looksLikeCredential, quotedUnlessCredential } from '../../../src/common/cli/credential-like.js';

test('join tokens in every form an operator may paste are taken for credentials', () => {
  const meshid = '0123456789abcdef0123456789abcdef01234567';
  assert.equal(looksLikeCredential(meshid), true, "meshid's 40 hex digits");
  assert.equal(looksLikeCredential(meshid.toUpperCase()), true, 'in capitals (copied from a tool that upper-cases hex)');
  assert.equal(looksLikeCredential('0123456789abcdef0123456789abcdef'), true, 'a UUID without its dashes (32 hex digits)');
  assert.equal(looksLikeCredential('0123456789abcdef0123456789abcde'), false, '31 hex digits are not a token');
  assert.equal(looksLikeCredential('1b4e28ba-2fa1-11d2-883f-0016d3cca427'), true, "SPIRE's UUID tokens");
  assert.equal(looksLikeCredential(`${meshid}\r`), true, 'a token read from a CRLF file');
});

test('JWT-SVIDs are taken for credentials whatever their header starts with, signed or not', () => {
  const b64 = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString('base64url');
  const payload = b64({ sub: 'spiffe://example.org/app', aud: ['db'] });
  assert.equal(looksLikeCredential(`${b64({ alg: 'ES256', kid: 'k' })}.${payload}.c2lnbmF0dXJl`), true);
  // {"typ":… encodes as eyJ0…, not eyJh…: the header's first member is the signer's choice.
  assert.equal(looksLikeCredential(`${b64({ typ: 'JWT', alg: 'ES256' })}.${payload}.c2lnbmF0dXJl`), true);
  // An unsecured JWT (alg none) has an empty signature part and is still a token someone could replay elsewhere.
  assert.equal(looksLikeCredential(`${b64({ alg: 'none' })}.${payload}.`), true);
});

test('names and paths that merely hold hex are quoted back', () => {
  const hash = 'c0ffee0123456789abcdef0123456789abcdef01';
  assert.equal(looksLikeCredential(`/var/lib/meshid/${hash}.json`), false);
  assert.equal(looksLikeCredential(`sha256:${hash}`), false);
  assert.equal(quotedUnlessCredential(`/tmp/${hash}`), `"/tmp/${hash}"`);
  assert.equal(quotedUnlessCredential(hash), '(a token or JWT-SVID, not repeated here: give it to the flag that takes it)');
});
