/**
 * Two trust domains federating through a bundle endpoint: example.org is a real meshid-server process serving its
 * endpoint; partner.org is an in-process server whose config federates with it (https_spiffe), on a fake clock so
 * polls happen when the test says. The fetches are real HTTPS between the two.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import https from 'node:https';
import { X509Certificate } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import os from 'node:os';
import path from 'node:path';
import { FakeClock } from '../../src/common/clock.js';
import { silentLogger } from '../../src/common/log.js';
import { pemToDerList } from '../../src/common/x509/pem.js';
import { compileServerConfig } from '../../src/server/config.js';
import type { RawRelationship } from '../../src/server/federation/relationship.js';
import { MeshidServer } from '../../src/server/server.js';
import { opensslCa, opensslWebLeaf } from '../support/openssl.js';
import { runNode, SERVER_MAIN, startServerProcess } from '../support/server-process.js';
import { teardown } from '../support/teardown.js';

async function partnerServer(dir: string, clock: FakeClock, federatesWith: Record<string, RawRelationship>): Promise<MeshidServer> {
  const config = compileServerConfig({
    trust_domain: 'partner.org',
    data_dir: path.join(dir, 'partner', 'data'),
    bind_address: '127.0.0.1:0',
    admin_socket: path.join(dir, 'partner', 'admin.sock'),
    federates_with: federatesWith,
  });
  return MeshidServer.start({ config, log: silentLogger(), clock });
}

test('a server federating over https_spiffe follows the partner\'s root rotation, and trusts nothing it cannot authenticate', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshid-federation-endpoint-'));
  teardown(t).after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const origin = await startServerProcess(path.join(dir, 'origin'), ['--datacenter', 'east', '--bundle-endpoint-address', '127.0.0.1:0']);
  teardown(t).after(() => origin.stop());
  const port = Number(/"bundleEndpoint":"[^"]*:(\d+)"/.exec(origin.output())![1]);
  const url = `https://127.0.0.1:${port}/`;
  const originRoots = (): Promise<Buffer[]> => origin.cli(['bundle', 'show']).then((r) => pemToDerList(r.out));

  const clock = new FakeClock(Date.now());
  const partner = await partnerServer(dir, clock, {
    'example.org': { bundle_endpoint_url: url, bundle_endpoint_profile: 'https_spiffe', endpoint_spiffe_id: 'spiffe://example.org/meshid/server' },
  });
  teardown(t).after(() => partner.stop());

  const partnerCli = (args: string[]) => runNode(SERVER_MAIN, [...args, '--admin-socket', partner.config.adminSocket]);
  // Nothing to authenticate the endpoint with yet: nothing is stored, and the operator is told what to do.
  const unseeded = await partnerCli(['federation', 'refresh', '--trust-domain', 'example.org']);
  assert.notEqual(unseeded.code, 0);
  assert.match(unseeded.err, /^Error: FailedPrecondition: no bundle of example\.org is stored .*meshid-server bundle set --trust-domain example\.org/);
  assert.equal(await partner.ds.getBundle('example.org'), undefined);
  const unknown = await partnerCli(['federation', 'refresh', '--trust-domain', 'nowhere.org']);
  assert.match(unknown.err, /^Error: NotFound: nowhere\.org has no federation relationship: create one with "meshid-server federation create", or add it to federates_with/);

  // The operator seeds the bundle once, as with SPIRE; from then on the endpoint keeps it current.
  const seed = (await origin.cli(['bundle', 'show', '--format', 'spiffe'])).out;
  const set = await runNode(SERVER_MAIN, ['bundle', 'set', '--trust-domain', 'example.org', '--data', seed, '--admin-socket', partner.config.adminSocket]);
  assert.equal(set.code, 0, set.err);
  const seeded = (await partner.ds.getBundle('example.org'))!;
  // The relationship's last poll failed for want of this bundle: setting it polls at once, not at the next retry.
  clock.advance(0);
  const repoll = partner.federation.pending('example.org');
  assert.ok(repoll, 'bundle set polled the failing relationship');
  await repoll;
  assert.equal(partner.federation.status('example.org')!.lastError, undefined);
  await partner.federation.refresh('example.org');
  assert.equal((await partner.ds.getBundle('example.org'))!.sequence, seeded.sequence, 'an unchanged bundle is not stored again');

  assert.equal((await origin.cli(['ca', 'rotate-root'])).code, 0);
  const refreshed = await partnerCli(['federation', 'refresh', '--trust-domain', 'example.org', '--output', 'json']);
  assert.equal(refreshed.code, 0, refreshed.err);
  assert.deepEqual(JSON.parse(refreshed.out), { code: 0, message: 'OK' }, "spire-server's Status of a refresh");
  const status = partner.federation.status('example.org')!;
  assert.equal(status.lastError, undefined);
  assert.equal(status.relationship.profile, 'https_spiffe');
  assert.equal(status.nextPollAt! - status.lastSuccessAt!, 300_000, 'the next poll at the refresh hint');
  const rotated = (await partner.ds.getBundle('example.org'))!;
  assert.deepEqual(new Set(rotated.x509Authorities.map((d) => d.toString('hex'))), new Set((await originRoots()).map((d) => d.toString('hex'))));
  assert.equal(rotated.x509Authorities.length, 2, 'the new root arrives before it signs anything');
  assert.ok(rotated.sequence > seeded.sequence);
  assert.ok(rotated.jwtAuthorities.length >= 1);

  // An endpoint that does not present the configured SPIFFE ID is not trusted, and the stored bundle stays.
  const wrongId = await partnerServer(path.join(dir, 'wrong'), clock, {
    'example.org': { bundle_endpoint_url: url, bundle_endpoint_profile: 'https_spiffe', endpoint_spiffe_id: 'spiffe://example.org/someone-else' },
  });
  teardown(t).after(() => wrongId.stop());
  assert.equal((await runNode(SERVER_MAIN, ['bundle', 'set', '--trust-domain', 'example.org', '--data', seed, '--admin-socket', wrongId.config.adminSocket])).code, 0);
  await wrongId.federation.refresh('example.org');
  assert.equal((await wrongId.ds.getBundle('example.org'))!.x509Authorities.length, 1, 'still only the seeded root');
  const listed = await runNode(SERVER_MAIN, ['federation', 'list', '--admin-socket', wrongId.config.adminSocket]);
  assert.match(listed.out, /Last error +: bundle endpoint https:\/\/127\.0\.0\.1:\d+\/ of example\.org: the endpoint presented spiffe:\/\/example\.org\/meshid\/server, not spiffe:\/\/example\.org\/someone-else/);
});

test('https_web both ways: a meshid server serves its bundle endpoint under web PKI files, renewed live; another fetches it', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshid-federation-web-'));
  teardown(t).after(() => fs.rmSync(dir, { recursive: true, force: true }));
  // A web PKI of our own: a CA the fetching server process is told to trust, and certificates for localhost, put in
  // place the way certbot renews them (new files renamed over the live ones).
  const webCa = opensslCa(dir, 'web-ca');
  const live = { cert: path.join(dir, 'live.pem'), key: path.join(dir, 'live.key') };
  const install = (pair: { cert: string; key: string }): void => {
    for (const [from, to] of [[pair.key, live.key], [pair.cert, live.cert]] as const) {
      fs.copyFileSync(from, `${to}.new`);
      fs.renameSync(`${to}.new`, to);
    }
  };
  const first = opensslWebLeaf(dir, webCa, 'first');
  install(first);
  const webConfig = path.join(dir, 'web.json');
  fs.writeFileSync(webConfig, JSON.stringify({ bundle_endpoint_cert_sync_interval: '100ms' }));
  const web = await startServerProcess(path.join(dir, 'web'), [
    '--trust-domain', 'web.example', '--datacenter', 'east', '--config', webConfig,
    '--bundle-endpoint-address', '127.0.0.1:0', '--bundle-endpoint-cert-file', live.cert, '--bundle-endpoint-key-file', live.key,
  ]);
  teardown(t).after(() => web.stop());
  assert.match(web.output(), /"profile":"https_web".*"bundle endpoint listening"/);
  const port = Number(/"bundleEndpoint":"[^"]*:(\d+)"/.exec(web.output())![1]);
  const presented = (): Promise<{ serial: string; body: string }> =>
    new Promise((resolve, reject) => {
      https
        .get({ host: '127.0.0.1', servername: 'localhost', port, path: '/', ca: fs.readFileSync(webCa.cert), agent: false }, (res) => {
          let body = '';
          res.on('data', (d: Buffer) => (body += d.toString()));
          res.on('end', () => resolve({ serial: (res.socket as TLSSocket).getPeerCertificate().serialNumber, body }));
        })
        .on('error', reject);
    });
  const serialOf = (file: string): string => new X509Certificate(fs.readFileSync(file)).serialNumber;
  assert.equal((await presented()).serial, serialOf(first.cert));

  const configFile = path.join(dir, 'server.json');
  fs.writeFileSync(configFile, JSON.stringify({
    federates_with: { 'web.example': { bundle_endpoint_url: `https://localhost:${port}/bundle`, bundle_endpoint_profile: 'https_web' } },
  }));
  const server = await startServerProcess(path.join(dir, 'server'), ['--config', configFile, '--datacenter', 'east'], { NODE_EXTRA_CA_CERTS: webCa.cert });
  teardown(t).after(() => server.stop());
  // The first poll runs at start; wait for the server to have stored what it fetched.
  let listed = '';
  for (let i = 0; i < 100 && listed === ''; i++) {
    const r = await server.cli(['bundle', 'list', '--trust-domain', 'web.example']);
    if (r.code === 0) listed = r.out;
    else await new Promise((r) => setTimeout(r, 100));
  }
  assert.deepEqual(pemToDerList(listed), pemToDerList((await web.cli(['bundle', 'show'])).out), server.output());

  // A renewal of the files is presented without a restart, and the fetching side goes on fetching through it.
  const second = opensslWebLeaf(dir, webCa, 'second');
  install(second);
  let now = '';
  for (let i = 0; i < 100 && now !== serialOf(second.cert); i++) {
    now = (await presented()).serial;
    if (now !== serialOf(second.cert)) await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(now, serialOf(second.cert), web.output());
  assert.match(web.output(), /bundle endpoint certificate reloaded/);
  const refreshed = await server.cli(['federation', 'refresh', '--trust-domain', 'web.example', '--output', 'json']);
  assert.equal(refreshed.code, 0, refreshed.err);
  assert.deepEqual(JSON.parse(refreshed.out), { code: 0, message: 'OK' });
});

test('federation create/update/delete over the admin API: polled at once, kept across restarts, config relationships left to the config', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshid-federation-api-'));
  teardown(t).after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const origin = await startServerProcess(path.join(dir, 'origin'), ['--datacenter', 'east', '--bundle-endpoint-address', '127.0.0.1:0']);
  teardown(t).after(() => origin.stop());
  const port = Number(/"bundleEndpoint":"[^"]*:(\d+)"/.exec(origin.output())![1]);
  const url = `https://127.0.0.1:${port}/`;
  const seedFile = path.join(dir, 'example.org.bundle.json');
  fs.writeFileSync(seedFile, (await origin.cli(['bundle', 'show', '--format', 'spiffe'])).out);

  const clock = new FakeClock(Date.now());
  // web.example comes from the config file; example.org will be created over the API.
  const configured = { 'web.example': { bundle_endpoint_url: 'https://localhost:1/bundle', bundle_endpoint_profile: 'https_web' } };
  let partner = await partnerServer(dir, clock, configured);
  teardown(t).after(() => partner.stop());
  const cli = (args: string[]) => runNode(SERVER_MAIN, [...args, '--admin-socket', partner.config.adminSocket]);

  // SPIRE's spellings; the seed bundle authenticates the first https_spiffe fetch.
  const created = await cli([
    'federation', 'create', '-trustDomain', 'example.org', '-bundleEndpointURL', url, '-bundleEndpointProfile', 'https_spiffe',
    '-endpointSpiffeID', 'spiffe://example.org/meshid/server', '-trustDomainBundlePath', seedFile,
  ]);
  assert.equal(created.code, 0, created.err);
  assert.match(created.out, /^Federation relationship with example\.org created\.\n\nTrust domain +: example\.org\n/);
  assert.match(created.out, /Defined in +: admin API/);
  const seeded = (await partner.ds.getBundle('example.org'))!;
  assert.ok(seeded.x509Authorities.length === 1, 'the seed is stored with the relationship');
  // Polled from the moment it exists (the timer at 0 ms runs when the fake clock moves).
  clock.advance(0);
  await partner.federation.pending('example.org');
  const polled = partner.federation.status('example.org')!;
  assert.equal(polled.lastError, undefined);
  assert.ok((polled.lastSuccessAt ?? 0) > 0, 'the first poll ran');
  assert.equal(polled.source, 'api');

  // Entries may federate with it; a root rotation at the origin arrives through it.
  assert.equal((await cli(['entry', 'create', '--spiffe-id', 'spiffe://partner.org/w', '--parent-id', 'spiffe://partner.org/a', '--selector', 'unix:uid:7', '--federates-with', 'example.org'])).code, 0);
  assert.equal((await origin.cli(['ca', 'rotate-root'])).code, 0);
  assert.equal((await cli(['federation', 'refresh', '--trust-domain', 'example.org'])).code, 0);
  assert.equal((await partner.ds.getBundle('example.org'))!.x509Authorities.length, 2);

  // Twice is refused; so are a config relationship's trust domain and a bad profile, each naming what to do.
  const again = await cli(['federation', 'create', '--trust-domain', 'example.org', '--bundle-endpoint-url', url, '--bundle-endpoint-profile', 'https_web']);
  assert.match(again.err, /^Error: AlreadyExists: a federation relationship with example\.org already exists/);
  const shadow = await cli(['federation', 'create', '--trust-domain', 'web.example', '--bundle-endpoint-url', url, '--bundle-endpoint-profile', 'https_web']);
  assert.match(shadow.err, /^Error: AlreadyExists: .*web\.example already exists in federates_with of the server's config file/);
  const noId = await cli(['federation', 'create', '--trust-domain', 'other.org', '--bundle-endpoint-url', url, '--bundle-endpoint-profile', 'https_spiffe']);
  assert.match(noId.err, /^Error: InvalidArgument: --bundle-endpoint-profile https_spiffe needs --endpoint-spiffe-id: /);
  assert.match((await cli(['federation', 'delete', '--trust-domain', 'web.example'])).err, /^Error: FailedPrecondition: the relationship with web\.example comes from federates_with in the server's config file: remove it there/);
  assert.match((await cli(['federation', 'delete', '--trust-domain', 'nowhere.org'])).err, /^Error: NotFound: nowhere\.org has no federation relationship/);

  // Kept across a restart, and polled again after it.
  await partner.stop();
  partner = await partnerServer(dir, clock, configured);
  const listed = await cli(['federation', 'list']);
  assert.deepEqual([...listed.out.matchAll(/^Trust domain +: (.*)\n[^]*?^Defined in +: (.*)$/gm)].map((m) => [m[1], m[2]]), [
    ['web.example', 'config file (federates_with)'],
    ['example.org', 'admin API'],
  ]);
  assert.equal((await cli(['federation', 'refresh', '--trust-domain', 'example.org'])).code, 0);

  // An update takes effect at once: a wrong endpoint SPIFFE ID makes the next poll fail.
  const updated = await cli([
    'federation', 'update', '--trust-domain', 'example.org', '--bundle-endpoint-url', url, '--bundle-endpoint-profile', 'https_spiffe',
    '--endpoint-spiffe-id', 'spiffe://example.org/someone-else',
  ]);
  assert.equal(updated.code, 0, updated.err);
  const refused = await cli(['federation', 'refresh', '--trust-domain', 'example.org']);
  assert.match(refused.err, /not spiffe:\/\/example\.org\/someone-else/);

  // Deleted: no longer listed or polled; the bundle stays, and the entry federating with it too.
  const deleted = await cli(['federation', 'delete', '-id', 'example.org']);
  assert.equal(deleted.code, 0, deleted.err);
  assert.match(deleted.out, /its bundle stays stored/);
  const left = JSON.parse((await cli(['federation', 'list', '--output', 'json'])).out) as { federation_relationships: Array<{ trust_domain: string }> };
  assert.deepEqual(left.federation_relationships.map((r) => r.trust_domain), ['web.example']);
  assert.equal(partner.federation.status('example.org'), undefined);
  assert.equal((await partner.ds.getBundle('example.org'))!.x509Authorities.length, 2);
  await partner.stop();
  partner = await partnerServer(dir, clock, configured);
  assert.equal(partner.federation.status('example.org'), undefined, 'still gone after a restart');
});
