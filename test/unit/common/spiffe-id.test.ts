import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { packageRoot } from '../../../src/common/paths.js';
import { MeshidError } from '../../../src/common/errors.js';
import { parseSpiffeId, parseTrustDomain, parseWorkloadId } from '../../../src/common/spiffe/spiffe-id.js';

const vectors = JSON.parse(fs.readFileSync(path.join(packageRoot, 'test/vectors/spiffe-ids.json'), 'utf8')) as {
  valid: string[];
  invalid: Array<[string, string]>;
};

test('every valid SPIFFE ID vector parses and round-trips byte-exact', () => {
  for (const id of vectors.valid) {
    const parsed = parseSpiffeId(id);
    assert.equal(parsed.id, id);
    assert.equal(`spiffe://${parsed.trustDomain}${parsed.path}`, id);
  }
});

test('every invalid SPIFFE ID vector is refused as invalid_argument with a message naming the problem', () => {
  for (const [id, reason] of vectors.invalid) {
    assert.throws(
      () => parseSpiffeId(id),
      (err: unknown) => err instanceof MeshidError && err.code === 'invalid_argument' && err.message.includes(reason),
      `expected "${id}" to be refused for: ${reason}`,
    );
  }
});

test('IDs of exactly 2048 bytes are accepted, 2049 refused', () => {
  const base = 'spiffe://example.org/';
  const ok = base + 'a'.repeat(2048 - base.length);
  assert.equal(Buffer.byteLength(ok), 2048);
  assert.equal(parseSpiffeId(ok).id, ok);
  assert.throws(() => parseSpiffeId(ok + 'a'), /longer than 2048 bytes/);
});

test('trust domains longer than 255 bytes are refused', () => {
  assert.throws(() => parseSpiffeId(`spiffe://${'a'.repeat(256)}/x`), /longer than 255 bytes/);
  assert.equal(parseSpiffeId(`spiffe://${'a'.repeat(255)}/x`).trustDomain.length, 255);
});

test('a workload ID needs a non-root path and our trust domain', () => {
  assert.equal(parseWorkloadId('spiffe://example.org/web', 'example.org').path, '/web');
  assert.throws(() => parseWorkloadId('spiffe://example.org', 'example.org'), /must have a path/);
  assert.throws(() => parseWorkloadId('spiffe://other.org/web', 'example.org'), /not in trust domain "example.org"/);
});

test('trust domains are accepted bare or as spiffe:// IDs without a path', () => {
  assert.equal(parseTrustDomain('example.org'), 'example.org');
  assert.equal(parseTrustDomain('spiffe://example.org'), 'example.org');
  assert.throws(() => parseTrustDomain('spiffe://example.org/x'), /with a path/);
  assert.throws(() => parseTrustDomain('Example.org'), /lowercase/);
  assert.throws(() => parseTrustDomain('https://example.org'), /spiffe scheme/);
  // A bare name is checked by itself, not by the SPIFFE ID parser's port and userinfo checks.
  for (const bare of ['example.org:8443', 'user@example.org', 'exa%6dple.org', 'example.org/x', '[::1]']) {
    assert.throws(() => parseTrustDomain(bare), /only lowercase letters, digits/, bare);
  }
});
