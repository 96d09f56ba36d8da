import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { packageRoot } from '../../../src/common/paths.js';
import { MeshidError } from '../../../src/common/errors.js';
import { parseSpiffeId, parseSpiffeIdStepByStep, parseTrustDomain, parseWorkloadId } from '../../../src/common/spiffe/spiffe-id.js';

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

/** What `parse` makes of `id`: the parsed ID, or the refusal's code and message. */
function outcome(parse: (id: string) => unknown, id: string): unknown {
  try {
    return parse(id);
  } catch (err) {
    return err instanceof MeshidError ? `${err.code}: ${err.message}` : err;
  }
}

test('the one-regex fast path of parseSpiffeId agrees with the rules checked one at a time, on vectors and on generated near-misses', () => {
  // Seeded, so a failure names an input that fails again.
  let seed = 48;
  const random = (n: number): number => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed % n;
  };
  // The characters each rule is about: scheme and separators, dots, port and userinfo, query and fragment, case,
  // percent-encoding, IPv6 brackets, non-ASCII, space.
  const allowed = ['a', 'z', 'A', 'Z', '0', '9', '.', '-', '_', '/', 'ab', '..'];
  const refused = ['//', ':', '@', '?', '#', '%2F', '[', ']', 'é', ' '];
  const piece = (): string => (random(12) === 0 ? refused[random(refused.length)]! : allowed[random(allowed.length)]!);
  const pieces = (count: number): string => Array.from({ length: count }, piece).join('');
  const inputs = [...vectors.valid, ...vectors.invalid.map(([id]) => id), 'spiffe://', 'spiffe://a', `spiffe://${'a'.repeat(255)}`, `spiffe://${'a'.repeat(256)}`];
  for (let i = 0; i < 20_000; i++) {
    const prefix = ['spiffe://', 'spiffe://', 'spiffe://example.org/', 'spiffe://example.org/', 'SPIFFE://', 'spiffe:/', ''][random(7)]!;
    inputs.push(prefix + pieces(random(12)));
  }
  // At the 2,048-byte limit, under and over, in ASCII and with a two-byte character.
  inputs.push(`spiffe://example.org/${'a'.repeat(2048 - 21)}`, `spiffe://example.org/${'a'.repeat(2049 - 21)}`, `spiffe://example.org/${'a'.repeat(2046 - 21)}é`);
  let accepted = 0;
  for (const id of inputs) {
    const expected = outcome(parseSpiffeIdStepByStep, id);
    assert.deepEqual(outcome(parseSpiffeId, id), expected, id);
    if (typeof expected !== 'string') accepted++;
  }
  // The generated inputs reach both sides of the rules, not only refusals.
  assert.ok(accepted > 500 && accepted < inputs.length - 500, `${accepted} of ${inputs.length} accepted`);
});
