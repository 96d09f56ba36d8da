/**
 * A partner's bundle piped into meshid-server's CLI, against a real server process. `federation create|update
 * --bundle-path -` reads standard input, as `entry create --data -` reads entries: nothing piped in, or something that
 * is no bundle, is refused before any relationship is created. `bundle set` holds a document piped in or given in
 * --data to what it holds a --path file to: a key given twice is refused.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pemToDerList } from '../../src/common/x509/pem.js';
import { bundleFromSpiffeJson } from '../../src/common/spiffe/bundle.js';
import { assertError, assertOk, cli, partnerBundle, startServerCliFixture } from '../support/server-cli-fixture.js';

startServerCliFixture('meshid-bundle-stdin-');

const relationship = (td: string): string[] => [
  '--trust-domain', td, '--bundle-endpoint-url', 'https://127.0.0.1:1/', '--bundle-endpoint-profile', 'https_spiffe',
  '--endpoint-spiffe-id', `spiffe://${td}/spire/server`,
];

test('federation create --bundle-path - stores the PEM bundle piped in with the relationship', async () => {
  const pem = partnerBundle('piped-partner.org');
  const created = await cli(['federation', 'create', ...relationship('piped-partner.org'), '--bundle-path', '-'], { stdin: pem });
  assertOk(created);
  assert.match(created.out, /^Federation relationship with piped-partner\.org created\.\n/);
  const stored = await cli(['bundle', 'list', '--trust-domain', 'piped-partner.org']);
  assertOk(stored);
  assert.deepEqual(pemToDerList(stored.out), pemToDerList(pem));
});

test("federation update -trustDomainBundlePath - (SPIRE's spelling) stores a SPIFFE bundle document piped in", async () => {
  assertOk(await cli(['federation', 'create', ...relationship('piped-spiffe.org')]));
  const doc = partnerBundle('piped-spiffe.org', 'spiffe');
  const updated = await cli(
    ['federation', 'update', ...relationship('piped-spiffe.org'), '-trustDomainBundlePath', '-', '-trustDomainBundleFormat', 'spiffe'],
    { stdin: doc },
  );
  assertOk(updated);
  const stored = await cli(['bundle', 'list', '--trust-domain', 'piped-spiffe.org', '--format', 'spiffe']);
  assertOk(stored);
  const want = bundleFromSpiffeJson('piped-spiffe.org', doc);
  const got = bundleFromSpiffeJson('piped-spiffe.org', stored.out);
  assert.deepEqual(got.x509Authorities, want.x509Authorities);
  assert.deepEqual(got.jwtAuthorities.map((a) => a.kid), want.jwtAuthorities.map((a) => a.kid));
});

test('--bundle-path - with nothing piped in, or with no bundle, is refused saying so, and nothing is created', async () => {
  for (const stdin of ['', ' \n\n']) {
    assertError(
      await cli(['federation', 'create', ...relationship('empty-pipe.org'), '--bundle-path', '-'], { stdin }),
      /^Error: InvalidArgument: --bundle-path - reads the bundle from standard input, which is empty: pipe the PEM CA certificates or the SPIFFE bundle document into it$/,
    );
  }
  assertError(
    await cli(['federation', 'create', ...relationship('empty-pipe.org'), '--bundle-path', '-'], { stdin: 'these are not certificates\n' }),
    /^Error: InvalidArgument: the bundle on standard input: no PEM "CERTIFICATE" block found$/,
  );
  assertError(await cli(['federation', 'show', '--trust-domain', 'empty-pipe.org']), /^Error: NotFound: /);
});

test('a SPIFFE bundle document holding "keys" twice is refused from standard input or --data as from a file, and nothing is stored', async () => {
  // JSON.parse keeps the last "keys": the server would have trusted that list alone, whichever one was meant.
  const doubled = partnerBundle('dup-pipe.org', 'spiffe').replace('{', '{\n  "keys": [],');
  const repeated = (source: string): RegExp =>
    new RegExp(`^Error: InvalidArgument: ${source}, line \\d+: duplicate key "keys" \\(first on line 2\\): only the last would take effect; remove one of them$`);
  assertError(await cli(['bundle', 'set', '--trust-domain', 'dup-pipe.org'], { stdin: doubled }), repeated('the bundle on standard input'));
  assertError(await cli(['bundle', 'set', '--trust-domain', 'dup-pipe.org', '--path', '-'], { stdin: doubled }), repeated('the bundle on standard input'));
  assertError(await cli(['bundle', 'set', '--trust-domain', 'dup-pipe.org', '--data', doubled]), repeated('the bundle in --data'));
  assertError(await cli(['bundle', 'list', '--trust-domain', 'dup-pipe.org']), /^Error: NotFound: /);
  assertError(
    await cli(['federation', 'create', ...relationship('dup-pipe.org'), '--bundle-path', '-'], { stdin: doubled }),
    repeated('the bundle on standard input'),
  );
  assertError(await cli(['federation', 'show', '--trust-domain', 'dup-pipe.org']), /^Error: NotFound: /);
  // Once only, it is taken.
  assertOk(await cli(['bundle', 'set', '--trust-domain', 'dup-pipe.org'], { stdin: partnerBundle('dup-pipe.org', 'spiffe') }));
});
