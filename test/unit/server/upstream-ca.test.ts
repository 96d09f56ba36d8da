/**
 * An operator's PKI as the upstream CA (SPIRE: UpstreamAuthority): made with the openssl CLI, loaded from files the
 * way meshid-server loads them, and judged by `openssl verify -x509_strict`.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import path from 'node:path';
import { FakeClock } from '../../../src/common/clock.js';
import { isMeshidError, MeshidError } from '../../../src/common/errors.js';
import { generateKeyPair } from '../../../src/common/x509/keys.js';
import { pemToDerList } from '../../../src/common/x509/pem.js';
import { parseCertificate } from '../../../src/common/x509/certificate.js';
import { verifyChain } from '../../../src/common/x509/chain-verification.js';
import { AgentSvidAnchor } from '../../../src/server/api/agent-svid-anchor.js';
import { opensslCa, opensslVerify } from '../../support/openssl.js';
import { checkUpstreamCa, checkUpstreamLifetime, loadUpstreamCa } from '../../../src/server/ca/upstream-ca.js';
import { openTestCa, tempDir } from '../../support/server-kit.js';
import type { RawServerConfig } from '../../../src/server/config.js';
import { teardown } from '../../support/teardown.js';

const H = 3_600_000;
const D = 24 * H;

const der = (file: string): Buffer => pemToDerList(fs.readFileSync(file, 'utf8'))[0]!;

function concat(dir: string, name: string, files: string[]): string {
  const out = path.join(dir, name);
  fs.writeFileSync(out, files.map((f) => fs.readFileSync(f, 'utf8')).join(''));
  return out;
}

/**
 * A corporate root, an issuing CA under it, and two mesh CAs it issued (the first upstream CA and its replacement),
 * with the files for --upstream-ca-cert/-key/-bundle of each; `data` is the server's data dir.
 */
function renewedUpstreamPki(dir: string) {
  const root = opensslCa(dir, 'Corporate Root');
  const issuing = opensslCa(dir, 'Issuing CA', { issuer: root });
  const files = (name: string, file: string): { cert: string; upstream: RawServerConfig } => {
    const ca = opensslCa(dir, name, { issuer: issuing });
    return { cert: ca.cert, upstream: { upstream_ca_cert: concat(dir, file, [ca.cert, issuing.cert]), upstream_ca_key: ca.key, upstream_bundle: root.cert } };
  };
  const mesh1 = files('Mesh CA 1', 'm1.pem');
  const mesh2 = files('Mesh CA 2', 'm2.pem');
  // After the certificates: openssl dates them from the second it runs, and a clock set before would precede them.
  return { root, data: path.join(dir, 'data'), clock: new FakeClock(Date.now()), mesh1, mesh2 };
}

function refusedWith(pattern: RegExp): (err: unknown) => boolean {
  return (err) => err instanceof MeshidError && pattern.test(err.message);
}

test('an upstream CA two levels under a corporate root: the root is the bundle, and every chain carries the CAs between', async (t) => {
  const { dir, cleanup } = tempDir('meshid-upstream-');
  teardown(t).after(cleanup);
  const root = opensslCa(dir, 'Corporate Root');
  const issuing = opensslCa(dir, 'Issuing CA', { issuer: root });
  const meshCa = opensslCa(dir, 'Mesh CA', { issuer: issuing });
  // The cert file as a PKI hands it out: the CA, its issuers, the root last (which chains do not need).
  const certFile = concat(dir, 'mesh-chain.pem', [meshCa.cert, issuing.cert, root.cert]);
  const ca = await openTestCa(path.join(dir, 'data'), { upstream_ca_cert: certFile, upstream_ca_key: meshCa.key, upstream_bundle: root.cert }, new FakeClock(Date.now()));
  teardown(t).after(() => ca.close());

  assert.deepEqual(ca.ca.bundle().x509Authorities, [der(root.cert)], 'the bundle is the corporate root alone');
  const { publicKey } = generateKeyPair('ec-p256');
  for (const datacenter of ['east', 'west']) {
    const signed = ca.ca.signX509Svid({ datacenter, publicKey, spiffeId: 'spiffe://example.org/w', ttlMs: D });
    assert.equal(signed.chain.length, 4);
    assert.deepEqual(signed.chain.slice(2), [der(meshCa.cert), der(issuing.cert)]);
    const r = opensslVerify({ roots: [der(root.cert)], intermediates: signed.chain.slice(1), leaf: signed.chain[0]!, atTime: ca.clock.now() });
    assert.ok(r.ok, r.output);
    verifyChain(signed.chain, ca.ca.bundle().x509Authorities, ca.clock.now(), { requireEndEntity: true });
  }
  // Tainting it would only bring the same certificate back from the same files.
  const upstreamId = ca.ca.listAuthorities().find((a) => a.kind === 'root')!.id;
  await assert.rejects(ca.ca.taint(upstreamId), refusedWith(/has the key of the upstream CA this server was started with: issue a CA with a new key in the upstream PKI/));
});

test('upstream CA files that cannot work are refused at start, each with what to fix', async (t) => {
  const { dir, cleanup } = tempDir('meshid-upstream-bad-');
  teardown(t).after(cleanup);
  const root = opensslCa(dir, 'Corporate Root');
  const otherRoot = opensslCa(dir, 'Other Root');
  const issuing = opensslCa(dir, 'Issuing CA', { issuer: root });
  const leafCa = opensslCa(dir, 'Last CA', { issuer: root, pathLen: 0 });
  const shortLived = opensslCa(dir, 'Short CA', { issuer: root, days: 10 });
  // After the certificates: the fake clock must not stand before their notBefore.
  const clock = new FakeClock(Date.now());
  let n = 0;
  const open = (raw: Record<string, string>): Promise<unknown> => openTestCa(path.join(dir, `data-${n++}`), raw, clock).then((c) => c.close());

  await assert.rejects(open({ upstream_ca_cert: issuing.cert, upstream_ca_key: issuing.key }), refusedWith(/is not self-signed.*give the roots it chains to with --upstream-bundle/));
  await assert.rejects(
    open({ upstream_ca_cert: concat(dir, 'chain.pem', [issuing.cert, root.cert]), upstream_ca_key: issuing.key }),
    refusedWith(/holds a chain of 2 certificates: give the roots it chains to with --upstream-bundle/),
  );
  await assert.rejects(
    open({ upstream_ca_cert: issuing.cert, upstream_ca_key: issuing.key, upstream_bundle: otherRoot.cert }),
    refusedWith(/does not chain to the upstream bundle: .*CN=Corporate Root", which is not a trusted root/),
  );
  await assert.rejects(
    open({ upstream_ca_cert: issuing.cert, upstream_ca_key: issuing.key, upstream_bundle: issuing.cert }),
    refusedWith(/upstream bundle certificate 0 .* is not self-signed/),
  );
  await assert.rejects(
    open({ upstream_ca_cert: leafCa.cert, upstream_ca_key: leafCa.key, upstream_bundle: root.cert }),
    refusedWith(/pathLenConstraint 0: it cannot sign the datacenter intermediates/),
  );
  await assert.rejects(open({ upstream_ca_cert: issuing.cert, upstream_ca_key: root.key, upstream_bundle: root.cert }), refusedWith(/key does not match its certificate/));
  await assert.rejects(
    open({ upstream_ca_cert: shortLived.cert, upstream_ca_key: shortLived.key, upstream_bundle: root.cert }),
    refusedWith(/expires .*too soon to cover two intermediate lifetimes/),
  );
  // Control: the same issuing CA with its root works.
  await open({ upstream_ca_cert: issuing.cert, upstream_ca_key: issuing.key, upstream_bundle: root.cert });
});

test('an upstream CA file that does not parse is named with the setting that gave it: the three are easily swapped', async (t) => {
  const { dir, cleanup } = tempDir('meshid-upstream-swapped-');
  teardown(t).after(cleanup);
  const root = opensslCa(dir, 'Corporate Root');
  const issuing = opensslCa(dir, 'Issuing CA', { issuer: root });
  const named = (what: string, file: string, setting: string, problem: RegExp) => (err: unknown): boolean => {
    assert.ok(isMeshidError(err, 'invalid_argument'), String(err));
    assert.ok(err.message.startsWith(`the upstream CA ${what} ${file} (${setting}): `), err.message);
    assert.match(err.message, problem);
    return true;
  };
  // The key given as the certificate, the certificate as the key, the key as the bundle.
  assert.throws(() => loadUpstreamCa({ certFile: issuing.key, keyFile: issuing.key }), named('certificate', issuing.key, 'upstream_ca_cert, --upstream-ca-cert', /PRIVATE KEY", expected "CERTIFICATE"$/));
  assert.throws(() => loadUpstreamCa({ certFile: issuing.cert, keyFile: issuing.cert }), named('key', issuing.cert, 'upstream_ca_key, --upstream-ca-key', /no private key found/));
  assert.throws(
    () => loadUpstreamCa({ certFile: issuing.cert, keyFile: issuing.key, bundleFile: root.key }),
    named('bundle', root.key, 'upstream_bundle, --upstream-bundle', /PRIVATE KEY", expected "CERTIFICATE"$/),
  );
});

test('an upstream PKI root meshid cannot verify (Ed25519, Ed448) or publish (EC on secp256k1) is refused at start, naming it and why', async (t) => {
  const { dir, cleanup } = tempDir('meshid-upstream-keys-');
  teardown(t).after(cleanup);
  const roots = {
    ed25519: opensslCa(dir, 'Ed25519 Root', { keyAlgorithm: 'ed25519' }),
    ed448: opensslCa(dir, 'Ed448 Root', { keyAlgorithm: 'ed448' }),
    k1: opensslCa(dir, 'K1 Root', { keyAlgorithm: 'secp256k1' }),
  };
  const issuing = { ed25519: opensslCa(dir, 'Under Ed25519', { issuer: roots.ed25519 }), k1: opensslCa(dir, 'Under K1', { issuer: roots.k1 }) };
  // The chains are sound: OpenSSL verifies them (meshid's verifier takes ECDSA and RSA signatures only).
  for (const [root, ca] of [[roots.ed25519, issuing.ed25519], [roots.k1, issuing.k1]] as const) {
    const r = opensslVerify({ roots: [der(root.cert)], intermediates: [], leaf: der(ca.cert) });
    assert.ok(r.ok, r.output);
  }
  const clock = new FakeClock(Date.now());
  let n = 0;
  const open = (raw: Record<string, string>): Promise<unknown> => openTestCa(path.join(dir, `data-${n++}`), raw, clock).then((c) => c.close());
  await assert.rejects(
    open({ upstream_ca_cert: issuing.ed25519.cert, upstream_ca_key: issuing.ed25519.key, upstream_bundle: roots.ed25519.cert }),
    refusedWith(/^upstream bundle certificate 0 \(.*CN=Ed25519 Root.*\) is signed with Ed25519 \(1\.3\.101\.112\), which meshid does not verify: it verifies ECDSA and RSA signatures only$/),
  );
  // An Ed448 root beside a usable one is refused too: every bundle root is a trust anchor.
  await assert.rejects(
    open({ upstream_ca_cert: issuing.k1.cert, upstream_ca_key: issuing.k1.key, upstream_bundle: concat(dir, 'two.pem', [roots.ed448.cert]) }),
    refusedWith(/^upstream bundle certificate 0 \(.*CN=Ed448 Root.*\) is signed with Ed448 \(1\.3\.101\.113\), which meshid does not verify/),
  );
  // Before: taken, and then the bundle endpoint, "bundle show --format spiffe" and every agent's save of its own bundle failed.
  await assert.rejects(
    open({ upstream_ca_cert: issuing.k1.cert, upstream_ca_key: issuing.k1.key, upstream_bundle: roots.k1.cert }),
    refusedWith(/^upstream bundle certificate 0 \("O=Example Corp, CN=K1 Root"\) has an EC secp256k1 key: .*SPIFFE bundle JWKs/),
  );
  await assert.rejects(open({ upstream_ca_cert: roots.k1.cert, upstream_ca_key: roots.k1.key }), refusedWith(/^the upstream CA certificate \("O=Example Corp, CN=K1 Root"\) has an EC secp256k1 key: /));
});

test('an upstream CA whose own key meshid cannot sign with (EC on secp256k1) is refused at start, a restart onto it too, naming the key', async (t) => {
  const { dir, cleanup } = tempDir('meshid-upstream-signing-key-');
  teardown(t).after(cleanup);
  const root = opensslCa(dir, 'Corporate Root');
  const usable = opensslCa(dir, 'Mesh CA', { issuer: root });
  // A sound chain: a P-256 root signed it; only its own key, which would sign the intermediates, is of a curve meshid does not sign with.
  const k1 = opensslCa(dir, 'K1 Mesh CA', { issuer: root, keyAlgorithm: 'secp256k1' });
  const r = opensslVerify({ roots: [der(root.cert)], intermediates: [], leaf: der(k1.cert) });
  assert.ok(r.ok, r.output);
  const clock = new FakeClock(Date.now());
  const refused = refusedWith(/^the upstream CA key \(EC on secp256k1\) cannot sign meshid's datacenter intermediates: issue the upstream CA with an EC P-256, P-384 or P-521 key, or an RSA key of 2048 bits or more$/);
  const k1Files = { upstream_ca_cert: k1.cert, upstream_ca_key: k1.key, upstream_bundle: root.cert };
  // Renewed files taken at a restart were the trap: published and activated, the CA failed every rotation from the
  // intermediates' half-life on (the JWT key's too), and JWT-SVIDs, then X.509-SVIDs, could no longer be signed.
  const data = path.join(dir, 'data');
  const first = await openTestCa(data, { upstream_ca_cert: usable.cert, upstream_ca_key: usable.key, upstream_bundle: root.cert }, clock);
  await first.close();
  await assert.rejects(openTestCa(data, k1Files, clock), refused);
  // A first start was refused before too, but by a message that did not say which key.
  await assert.rejects(openTestCa(path.join(dir, 'fresh'), k1Files, clock), refused);
  // Nothing of it was kept: the server starts again on the usable files.
  const again = await openTestCa(data, { upstream_ca_cert: usable.cert, upstream_ca_key: usable.key, upstream_bundle: root.cert }, clock);
  teardown(t).after(() => again.close());
  assert.equal(again.ca.listAuthorities().filter((a) => a.kind === 'root').length, 1);
});

test('an upstream CA key meshid cannot sign with (Ed25519) is refused by a message that names the key and lists the usable keys once', async (t) => {
  const { dir, cleanup } = tempDir('meshid-upstream-ed25519-key-');
  teardown(t).after(cleanup);
  const root = opensslCa(dir, 'Corporate Root');
  // A sound chain (a P-256 root signed it): only its own key, which would sign the intermediates, is one meshid does not sign with.
  const ed = opensslCa(dir, 'Ed25519 Mesh CA', { issuer: root, keyAlgorithm: 'ed25519' });
  const r = opensslVerify({ roots: [der(root.cert)], intermediates: [], leaf: der(ed.cert) });
  assert.ok(r.ok, r.output);
  // From the files, reading the key refuses it already, listing exactly the keys the start check takes...
  assert.throws(
    () => loadUpstreamCa({ certFile: ed.cert, keyFile: ed.key, bundleFile: root.cert }),
    refusedWith(/^the upstream CA key .*Ed25519 Mesh CA\.key \(upstream_ca_key, --upstream-ca-key\): ed25519 private keys are not supported: use an EC key on P-256, P-384 or P-521, or an RSA key of 2048 bits or more$/),
  );
  // ...and the start check, which does not rely on that, said "...not supported for signing certificates (use EC P-256,
  // P-384, P-521 or RSA of 2048 bits or more); issue the upstream CA with an EC P-256, P-384 or P-521 key, or ...".
  const upstream = { certDer: der(ed.cert), privateKey: createPrivateKey(fs.readFileSync(ed.key)), chainDer: [], bundleDer: [der(root.cert)] };
  assert.throws(
    () => checkUpstreamCa(upstream, Date.now(), 'example.org'),
    refusedWith(/^the upstream CA key \(Ed25519\) cannot sign meshid's datacenter intermediates: issue the upstream CA with an EC P-256, P-384 or P-521 key, or an RSA key of 2048 bits or more$/),
  );
});

test('an upstream CA whose URI SAN is no SPIFFE ID (its PKI\'s https URI) signs, and the server starts again on its data dir', async (t) => {
  const { dir, cleanup } = tempDir('meshid-upstream-uri-san-');
  teardown(t).after(cleanup);
  const extensions = ['basicConstraints=critical,CA:TRUE', 'keyUsage=critical,keyCertSign,cRLSign', 'subjectKeyIdentifier=hash'];
  const ca = opensslCa(dir, 'URI CA', { extensions: [...extensions, 'subjectAltName=URI:https://pki.example.com/ca'] });
  const clock = new FakeClock(Date.now());
  const data = path.join(dir, 'data');
  const files = { upstream_ca_cert: ca.cert, upstream_ca_key: ca.key };
  const first = await openTestCa(data, files, clock);
  const { publicKey } = generateKeyPair('ec-p256');
  const chain = first.ca.signX509Svid({ datacenter: 'east', publicKey, spiffeId: 'spiffe://example.org/w', ttlMs: H }).chain;
  const r = opensslVerify({ roots: [der(ca.cert)], intermediates: chain.slice(1), leaf: chain[0]!, atTime: clock.now() });
  assert.ok(r.ok, r.output);
  await first.close();
  // Before: the URI was read as the data dir's trust domain, "ki.example.com/ca", and every restart was refused.
  const again = await openTestCa(data, files, clock);
  teardown(t).after(() => again.close());
  assert.deepEqual(again.ca.bundle().x509Authorities, [der(ca.cert)]);
});

test('an upstream CA with the SPIFFE ID of another trust domain, or one with a path, is refused at start before anything is kept', async (t) => {
  const { dir, cleanup } = tempDir('meshid-upstream-spiffe-id-');
  teardown(t).after(cleanup);
  const extensions = ['basicConstraints=critical,CA:TRUE', 'keyUsage=critical,keyCertSign,cRLSign', 'subjectKeyIdentifier=hash'];
  const withUri = (name: string, uri: string) => opensslCa(dir, name, { extensions: [...extensions, `subjectAltName=URI:${uri}`] });
  const other = withUri('Other CA', 'spiffe://other.org');
  const withPath = withUri('Path CA', 'spiffe://example.org/ca');
  const own = withUri('Own CA', 'spiffe://example.org');
  const clock = new FakeClock(Date.now());
  const data = path.join(dir, 'data');
  const refused = (uri: string) =>
    refusedWith(new RegExp(`^the upstream CA certificate \\("O=Example Corp, CN=\\w+ CA"\\) has the SPIFFE ID ${uri} in its URI SAN, but it would sign the intermediates of spiffe://example\\.org: issue it with URI SAN spiffe://example\\.org`));
  // Before: a first start committed the CA, then failed on every intermediate and left the data dir claimed by other.org.
  await assert.rejects(openTestCa(data, { upstream_ca_cert: other.cert, upstream_ca_key: other.key }, clock), refused('spiffe://other\\.org'));
  await assert.rejects(openTestCa(data, { upstream_ca_cert: withPath.cert, upstream_ca_key: withPath.key }, clock), refused('spiffe://example\\.org/ca'));
  const first = await openTestCa(data, { upstream_ca_cert: own.cert, upstream_ca_key: own.key }, clock);
  await first.close();
  // A restart onto renewed files of another trust domain: before, published at once and signing nothing after the activation delay.
  await assert.rejects(openTestCa(data, { upstream_ca_cert: other.cert, upstream_ca_key: other.key }, clock), refused('spiffe://other\\.org'));
  const again = await openTestCa(data, { upstream_ca_cert: own.cert, upstream_ca_key: own.key }, clock);
  teardown(t).after(() => again.close());
  assert.deepEqual(again.ca.bundle().x509Authorities, [der(own.cert)]);
});

test('a restart with a renewed upstream CA publishes it at once and moves chains to it after the activation delay', async (t) => {
  const { dir, cleanup } = tempDir('meshid-upstream-renew-');
  teardown(t).after(cleanup);
  const oldRoot = opensslCa(dir, 'Root 2026');
  const newRoot = opensslCa(dir, 'Root 2027');
  const data = path.join(dir, 'data');
  const clock = new FakeClock(Date.now());
  const first = await openTestCa(data, { upstream_ca_cert: oldRoot.cert, upstream_ca_key: oldRoot.key }, clock);
  const sequence = first.ca.bundle().sequence;
  await first.close();

  const ca = await openTestCa(data, { upstream_ca_cert: newRoot.cert, upstream_ca_key: newRoot.key }, clock);
  teardown(t).after(() => ca.close());
  const published = ca.ca.bundle().x509Authorities;
  assert.equal(published.length, 2);
  assert.ok(published.some((r) => r.equals(der(oldRoot.cert))) && published.some((r) => r.equals(der(newRoot.cert))), 'the renewed CA is published before it signs');
  assert.equal(ca.ca.bundle().sequence, sequence + 1);
  const { publicKey } = generateKeyPair('ec-p256');
  const issuedBy = (): Buffer => {
    const chain = ca.ca.signX509Svid({ datacenter: 'east', publicKey, spiffeId: 'spiffe://example.org/w', ttlMs: D }).chain;
    const r = opensslVerify({ roots: [der(newRoot.cert)], intermediates: chain.slice(1), leaf: chain[0]!, atTime: ca.clock.now() });
    return r.ok ? der(newRoot.cert) : der(oldRoot.cert);
  };
  assert.deepEqual(issuedBy(), der(oldRoot.cert), 'until the activation delay, chains stay on the old CA');
  let moved = false;
  for (let day = 0; day < 10 && !moved; day++) {
    clock.advance(D);
    await ca.ca.rotateNow();
    moved = issuedBy().equals(der(newRoot.cert));
  }
  assert.ok(moved, 'chains moved to the renewed upstream CA');
});


test('a restart with a changed upstream bundle publishes it; a bundle the CA no longer chains to is refused', async (t) => {
  const { dir, cleanup } = tempDir('meshid-upstream-bundle-');
  teardown(t).after(cleanup);
  const rootA = opensslCa(dir, 'Root A');
  const rootB = opensslCa(dir, 'Root B');
  const issuing = opensslCa(dir, 'Issuing CA', { issuer: rootA });
  const data = path.join(dir, 'data');
  const clock = new FakeClock(Date.now());
  const upstream = { upstream_ca_cert: issuing.cert, upstream_ca_key: issuing.key };
  const first = await openTestCa(data, { ...upstream, upstream_bundle: rootA.cert }, clock);
  const sequence = first.ca.bundle().sequence;
  await first.close();

  // The PKI adds a root: the next start publishes both.
  const second = await openTestCa(data, { ...upstream, upstream_bundle: concat(dir, 'ab.pem', [rootA.cert, rootB.cert]) }, clock);
  assert.deepEqual(second.ca.bundle().x509Authorities, [der(rootA.cert), der(rootB.cert)]);
  assert.equal(second.ca.bundle().sequence, sequence + 1);
  await second.close();

  // A bundle without the CA's root would make every SVID unverifiable: refused, and nothing is published.
  await assert.rejects(openTestCa(data, { ...upstream, upstream_bundle: rootB.cert }, clock), refusedWith(/does not chain to the upstream bundle/));
  const third = await openTestCa(data, { ...upstream, upstream_bundle: concat(dir, 'ab.pem', [rootA.cert, rootB.cert]) }, clock);
  assert.equal(third.ca.bundle().sequence, sequence + 1);
  await third.close();
});

test('chains under an upstream CA the files no longer name still carry its issuers, and its roots stay published', async (t) => {
  const { dir, cleanup } = tempDir('meshid-upstream-old-');
  teardown(t).after(cleanup);
  const { root, data, clock, mesh1, mesh2 } = renewedUpstreamPki(dir);
  const first = await openTestCa(data, mesh1.upstream, clock);
  await first.close();
  const { publicKey } = generateKeyPair('ec-p256');
  const checkChains = (ca: Awaited<ReturnType<typeof openTestCa>>, when: string): void => {
    const chain = ca.ca.signX509Svid({ datacenter: 'east', publicKey, spiffeId: 'spiffe://example.org/w', ttlMs: D }).chain;
    const r = opensslVerify({ roots: ca.ca.bundle().x509Authorities, intermediates: chain.slice(1), leaf: chain[0]!, atTime: clock.now() });
    assert.ok(r.ok, `${when}: ${r.output}`);
  };

  // Renewed in the PKI: Mesh CA 1 keeps signing until Mesh CA 2 activates, and its chains stay whole all along.
  const renewed = await openTestCa(data, mesh2.upstream, clock);
  for (let day = 0; day < 3; day++) {
    checkChains(renewed, `renewed, day ${day}`);
    clock.advance(D);
    await renewed.ca.rotateNow();
  }
  await renewed.close();

  // Started without any upstream flags: the corporate root stays in the bundle while roots it anchors live, beside the
  // root of meshid's own prepared to take over (upstream-switch-off.test.ts).
  const plain = await openTestCa(data, {}, clock);
  teardown(t).after(() => plain.close());
  const own = plain.ca.listAuthorities().find((a) => a.kind === 'root' && a.state === 'prepared')!;
  assert.deepEqual(plain.ca.bundle().x509Authorities, [der(root.cert), own.certDer]);
  checkChains(plain, 'without upstream flags');
});

test('an upstream PKI that leaves no room below it for the datacenter intermediates is refused at start', async (t) => {
  const { dir, cleanup } = tempDir('meshid-upstream-pathlen-');
  teardown(t).after(cleanup);
  const root = opensslCa(dir, 'Corporate Root');
  const issuing = opensslCa(dir, 'Issuing CA', { issuer: root, pathLen: 1 });
  const mesh = opensslCa(dir, 'Mesh CA', { issuer: issuing });
  await assert.rejects(
    openTestCa(path.join(dir, 'data'), { upstream_ca_cert: concat(dir, 'chain.pem', [mesh.cert, issuing.cert]), upstream_ca_key: mesh.key, upstream_bundle: root.cert }, new FakeClock(Date.now())),
    refusedWith(/"O=Example Corp, CN=Issuing CA" has pathLenConstraint 1, but chains under the upstream CA put 2 CA certificate\(s\) below it/),
  );
});

test('an upstream PKI CA that strict verifiers refuse is refused at start, naming it and the flaw; a flawed root no chain ends at is not', async (t) => {
  const { dir, cleanup } = tempDir('meshid-upstream-profile-');
  teardown(t).after(cleanup);
  const KU = 'keyUsage=critical,keyCertSign,cRLSign';
  const BC = 'basicConstraints=critical,CA:TRUE';
  const SKI = 'subjectKeyIdentifier=hash';
  const AKI = 'authorityKeyIdentifier=keyid';
  const root = opensslCa(dir, 'Corporate Root');
  const flawed = (name: string, extensions: string[], issuer = root) => ({ ...opensslCa(dir, name, { issuer, extensions }), subject: `O=Example Corp, CN=${name}` });
  const cases = [
    // Each upstream CA as issued, what OpenSSL -x509_strict says of it, and meshid's phrase for the flaw.
    { ca: flawed('No KU', [BC, SKI, AKI]), purpose: undefined, openssl: /error 92 .*CA cert does not include key usage/, flaw: /has no keyUsage extension/ },
    { ca: flawed('BC not critical', ['basicConstraints=CA:TRUE', KU, SKI, AKI]), purpose: undefined, openssl: /error 89 /, flaw: /has basicConstraints not marked critical/ },
    { ca: flawed('No AKI', [BC, KU, SKI, 'authorityKeyIdentifier=none']), purpose: undefined, openssl: /error 85 /, flaw: /has no authorityKeyIdentifier/ },
    { ca: flawed('Server only', [BC, KU, SKI, AKI, 'extendedKeyUsage=serverAuth']), purpose: 'sslclient' as const, openssl: /error 26 .*unsuitable certificate purpose/, flaw: /has an extKeyUsage without both serverAuth and clientAuth/ },
  ];
  // OpenSSL takes a negative serial; Go >= 1.23 (go-spiffe, SPIRE) and pyca/cryptography refuse to parse or verify it.
  const negative = opensslCa(dir, 'Negative serial', { issuer: root, serial: '-12345' });
  const noKuIssuing = flawed('Issuing without KU', [BC, SKI, AKI]);
  const mesh = opensslCa(dir, 'Mesh CA', { issuer: noKuIssuing });
  const noKuRoot = opensslCa(dir, 'Root without KU', { extensions: [BC, SKI] });
  const underIt = opensslCa(dir, 'Mesh CA 2', { issuer: noKuRoot });
  const good = opensslCa(dir, 'Good Mesh CA', { issuer: root });
  // After the certificates: the fake clock must not stand before their notBefore.
  const clock = new FakeClock(Date.now());
  let n = 0;
  const open = (raw: RawServerConfig): Promise<void> => openTestCa(path.join(dir, `data-${n++}`), raw, clock).then((c) => c.close());
  const reissue = /: OpenSSL in strict mode .* would refuse every SVID whose chain goes through it; reissue it with basicConstraints=critical,CA:TRUE, keyUsage=critical,keyCertSign,cRLSign/;
  for (const c of cases) {
    const judged = opensslVerify({ roots: [der(root.cert)], leaf: der(c.ca.cert), ...(c.purpose ? { purpose: c.purpose } : {}) });
    assert.match(judged.output, c.openssl, 'the flaw is one OpenSSL refuses');
    await assert.rejects(open({ upstream_ca_cert: c.ca.cert, upstream_ca_key: c.ca.key, upstream_bundle: root.cert }), refusedWith(new RegExp(`^the upstream CA certificate \\("${c.ca.subject}"\\) ${c.flaw.source}${reissue.source}`)));
  }
  // An issuer above the upstream CA travels in every chain too; a root is every chain's anchor.
  await assert.rejects(
    open({ upstream_ca_cert: concat(dir, 'chain.pem', [mesh.cert, noKuIssuing.cert]), upstream_ca_key: mesh.key, upstream_bundle: root.cert }),
    refusedWith(/^upstream CA chain certificate 1 \("O=Example Corp, CN=Issuing without KU"\) has no keyUsage extension/),
  );
  await assert.rejects(
    open({ upstream_ca_cert: negative.cert, upstream_ca_key: negative.key, upstream_bundle: root.cert }),
    refusedWith(/^the upstream CA certificate \("O=Example Corp, CN=Negative serial"\) has a serial number that is not positive: /),
  );
  await assert.rejects(open({ upstream_ca_cert: underIt.cert, upstream_ca_key: underIt.key, upstream_bundle: noKuRoot.cert }), refusedWith(/^upstream bundle certificate 0 .* has no keyUsage extension/));
  await assert.rejects(open({ upstream_ca_cert: noKuRoot.cert, upstream_ca_key: noKuRoot.key }), refusedWith(/^the upstream CA certificate .* has no keyUsage extension/));
  // A root published beside the one the chains end at anchors none of them.
  await open({ upstream_ca_cert: good.cert, upstream_ca_key: good.key, upstream_bundle: concat(dir, 'bundle.pem', [root.cert, noKuRoot.cert]) });
});

test('a root renewed with the same key cannot be tainted: the taint would cover its successor and never clear', async (t) => {
  const { dir, cleanup } = tempDir('meshid-upstream-samekey-');
  teardown(t).after(cleanup);
  const first = opensslCa(dir, 'Root', { days: 3650 });
  const renewed = opensslCa(dir, 'Root renewed', { reuseKey: first.key, subject: '/O=Example Corp/CN=Root', days: 3660 });
  const data = path.join(dir, 'data');
  const clock = new FakeClock(Date.now());
  await (await openTestCa(data, { upstream_ca_cert: first.cert, upstream_ca_key: first.key }, clock)).close();
  const ca = await openTestCa(data, { upstream_ca_cert: renewed.cert, upstream_ca_key: renewed.key }, clock);
  teardown(t).after(() => ca.close());
  const old = ca.ca.listAuthorities().find((a) => a.kind === 'root' && a.state === 'active')!;
  await assert.rejects(ca.ca.taint(old.id), refusedWith(/has the key of the upstream CA this server was started with/));
  assert.equal(ca.ca.taintedKeyIds().length, 0);
});

test('an upstream CA the PKI renewed with the same key: chains carry the renewed certificate, and stay valid after the first one expires', async (t) => {
  const { dir, cleanup } = tempDir('meshid-upstream-rekeyless-');
  teardown(t).after(cleanup);
  const pki = opensslCa(dir, 'Corporate Root', { days: 3650 });
  const first = opensslCa(dir, 'Mesh CA', { issuer: pki, days: 60 });
  const renewed = opensslCa(dir, 'Mesh CA renewed', { issuer: pki, reuseKey: first.key, subject: '/O=Example Corp/CN=Mesh CA', days: 365 });
  const data = path.join(dir, 'data');
  const clock = new FakeClock(Date.now());
  await (await openTestCa(data, { upstream_ca_cert: first.cert, upstream_ca_key: first.key, upstream_bundle: pki.cert }, clock)).close();
  const ca = await openTestCa(data, { upstream_ca_cert: renewed.cert, upstream_ca_key: renewed.key, upstream_bundle: pki.cert }, clock);
  teardown(t).after(() => ca.close());

  const firstExpires = ca.ca.listAuthorities().find((a) => a.kind === 'root' && a.certDer?.equals(der(first.cert)))!.notAfter;
  // Day by day, as the minutely housekeeping would, to half a day before the first certificate expires.
  while (clock.now() + D < firstExpires - 12 * H) {
    clock.advance(D);
    await ca.ca.rotateNow();
  }
  clock.set(firstExpires - 12 * H);
  await ca.ca.rotateNow();
  const { publicKey } = generateKeyPair('ec-p256');
  const chain = ca.ca.signX509Svid({ datacenter: 'east', publicKey, spiffeId: 'spiffe://example.org/w', ttlMs: D }).chain;
  assert.deepEqual(chain[2], der(renewed.cert), 'the chain carries the certificate that outlives the intermediate');
  const r = opensslVerify({ roots: [der(pki.cert)], intermediates: chain.slice(1), leaf: chain[0]!, atTime: firstExpires + H });
  assert.ok(r.ok, r.output);
});

test('an intermediate the upstream CA can no longer cover fails alone: the JWT key and the other work still rotate', async (t) => {
  const { dir, cleanup } = tempDir();
  teardown(t).after(cleanup);
  const pki = opensslCa(dir, 'short-lived', { days: 20 });
  const clock = new FakeClock(Date.now());
  const ca = await openTestCa(path.join(dir, 'data'), { upstream_ca_cert: pki.cert, upstream_ca_key: pki.key }, clock);
  teardown(t).after(() => ca.close());
  let failure: unknown;
  for (let day = 0; day < 18; day++) {
    clock.advance(D);
    try {
      await ca.ca.recheck();
    } catch (err) {
      failure = err;
    }
  }
  assert.ok(failure instanceof MeshidError, String(failure));
  assert.equal(failure.code, 'failed_precondition');
  assert.match(failure.message, /could not renew every intermediate \(everything else was committed\): datacenter east: .*datacenter west: /);
  // Before the fix the failure held back the JWT key's rotation too, and JWT-SVIDs stopped a day later.
  const jwt = ca.ca.signJwtSvid({ spiffeId: 'spiffe://example.org/w', audience: ['a'], ttlMs: 5 * 60_000 });
  assert.ok(jwt.expiresAt > clock.now());
  assert.ok(ca.ca.listAuthorities().filter((a) => a.kind === 'jwt').every((a) => a.notAfter > clock.now()), 'expired JWT keys were cleaned up');
});

test('an upstream CA that expires while the server runs stops X.509 signing only: the JWT key still rotates and signs', async (t) => {
  const { dir, cleanup } = tempDir();
  teardown(t).after(cleanup);
  const pki = opensslCa(dir, 'short-lived', { days: 20 });
  const clock = new FakeClock(Date.now());
  const ca = await openTestCa(path.join(dir, 'data'), { upstream_ca_cert: pki.cert, upstream_ca_key: pki.key }, clock);
  teardown(t).after(() => ca.close());
  const upstreamEnd = parseCertificate(der(pki.cert)).notAfter;
  let failure: unknown;
  // Day by day, as the housekeeping would, to three days past the upstream CA's end (the JWT key lives one day).
  while (clock.now() < upstreamEnd + 3 * D) {
    clock.advance(D);
    failure = undefined;
    try {
      await ca.ca.recheck();
    } catch (err) {
      failure = err;
    }
  }
  // The reason names the files to renew, and still says the rest was committed.
  assert.ok(failure instanceof MeshidError, String(failure));
  assert.equal(failure.code, 'failed_precondition');
  assert.match(failure.message, /could not renew every intermediate \(everything else was committed\): root: the upstream CA certificate expires .*renew it/);
  const jwt = ca.ca.signJwtSvid({ spiffeId: 'spiffe://example.org/w', audience: ['a'], ttlMs: 5 * 60_000 });
  assert.ok(jwt.expiresAt > clock.now());
  const kid = JSON.parse(Buffer.from(jwt.token.split('.')[0]!, 'base64url').toString()).kid as string;
  assert.ok(ca.ca.bundle().jwtAuthorities.some((k) => k.kid === kid), 'signed with a published key');
  const { publicKey } = generateKeyPair('ec-p256');
  // Refused by the CA for want of a usable east intermediate, saying it expired rather than "retry shortly".
  assert.throws(
    () => ca.ca.signX509Svid({ datacenter: 'east', publicKey, spiffeId: 'spiffe://example.org/w', ttlMs: H }),
    (err: unknown) => isMeshidError(err) && err.code === 'unavailable' && /^the east intermediate CA expired at .* no successor could be made: the server log says why/.test(err.message),
  );
});

test('no intermediate outlives a CA of the upstream PKI above it: its chains would end with that CA', async (t) => {
  const { dir, cleanup } = tempDir('meshid-upstream-');
  teardown(t).after(cleanup);
  const root = opensslCa(dir, 'Corporate Root');
  const issuing = opensslCa(dir, 'Issuing CA', { issuer: root, days: 20 });
  // openssl lets a CA outlive its issuer; a PKI that renews them on separate schedules ends up here.
  const meshCa = opensslCa(dir, 'Mesh CA', { issuer: issuing, days: 60 });
  const certFile = concat(dir, 'mesh-chain.pem', [meshCa.cert, issuing.cert]);
  const clock = new FakeClock(Date.now());
  const ca = await openTestCa(path.join(dir, 'data'), { upstream_ca_cert: certFile, upstream_ca_key: meshCa.key, upstream_bundle: root.cert }, clock);
  teardown(t).after(() => ca.close());
  const issuingEnd = new Date(new X509Certificate(fs.readFileSync(issuing.cert)).validTo).getTime();
  let failure: unknown;
  for (let i = 0; i < 30; i++) {
    clock.advance(D / 2);
    try {
      await ca.ca.recheck();
    } catch (err) {
      failure = err;
    }
  }
  assert.match(String((failure as Error)?.message), /the upstream PKI's CA ".*Issuing CA" expires .*, before a new 7d intermediate for east would, and chains end with it/);
  for (const a of ca.ca.listAuthorities().filter((r) => r.kind === 'intermediate')) {
    assert.ok(a.notAfter <= issuingEnd, `${a.id} ends ${new Date(a.notAfter).toISOString()}, after the Issuing CA`);
  }
});

test('revoking a tainted upstream CA whose PKI root stays published is refused, naming that root; a tainted CA under the same root keeps it too, and the two are revoked together, taking the root out', async (t) => {
  const { dir, cleanup } = tempDir('meshid-upstream-revoke-');
  teardown(t).after(cleanup);
  const { root, data, clock, mesh1, mesh2 } = renewedUpstreamPki(dir);
  const first = await openTestCa(data, mesh1.upstream, clock);
  const { publicKey } = generateKeyPair('ec-p256');
  const onMesh1 = first.ca.signX509Svid({ datacenter: 'east', publicKey, spiffeId: 'spiffe://example.org/agent', ttlMs: D }).chain;
  await first.close();
  const ca = await openTestCa(data, mesh2.upstream, clock);
  const old = ca.ca.listAuthorities().find((a) => a.kind === 'root' && a.certDer?.equals(der(mesh1.cert)))!;
  await ca.ca.taint(old.id);
  const journal = ca.ca.listAuthorities().map((a) => `${a.id} ${a.state}`);
  await assert.rejects(
    ca.ca.revoke(old.id, async () => assert.fail('no agents check: the rotation refuses on its own')),
    refusedWith(new RegExp(`^root ${old.id} was issued by the upstream PKI, and its chains end at "O=Example Corp, CN=Corporate Root", which stays in the bundle without it \\(it is in --upstream-bundle \\(upstream_bundle\\)\\): .* leaves by itself when the last intermediate under it expires \\(`)),
  );
  assert.deepEqual(ca.ca.listAuthorities().map((a) => `${a.id} ${a.state}`), journal, 'nothing changed');
  assert.deepEqual(ca.ca.bundle().x509Authorities, [der(root.cert)]);
  const r = opensslVerify({ roots: ca.ca.bundle().x509Authorities, intermediates: onMesh1.slice(1), leaf: onMesh1[0]!, atTime: clock.now() });
  assert.ok(r.ok, `an SVID under the tainted CA still verifies against the bundle, as it would have after a revoke: ${r.output}`);
  await ca.close();

  // A mesh CA under another corporate root, with only that root as --upstream-bundle: the first corporate root stays
  // published while a CA anchored there is left that is not tainted, and the refusal names it. Once that one is
  // tainted too, the two are revoked in turn (agents checked, since their chains lose their anchor) and the first
  // corporate root leaves the bundle: a compromised CA and its renewal under one PKI root do not hold each other.
  const other = opensslCa(dir, 'Other Root');
  const mesh3 = opensslCa(dir, 'Mesh CA 3', { issuer: other });
  // openssl dates them from the second it runs, which may be past the clock's by now.
  clock.set(Math.max(clock.now(), Date.now()));
  const third = await openTestCa(data, { upstream_ca_cert: mesh3.cert, upstream_ca_key: mesh3.key, upstream_bundle: other.cert }, clock);
  teardown(t).after(() => third.close());
  const second = third.ca.listAuthorities().find((a) => a.kind === 'root' && a.certDer?.equals(der(mesh2.cert)))!;
  await assert.rejects(third.ca.revoke(old.id), refusedWith(new RegExp(`\\(it anchors root ${second.id} \\(active\\) too\\): .*--force does not change this`)));
  await third.ca.taint(second.id);
  // Revoked alone, the first CA would stop nothing: the tainted renewal keeps the corporate root published.
  await assert.rejects(
    third.ca.revoke(old.id),
    refusedWith(new RegExp(`while tainted root\\(s\\) ${second.id} are anchored there too: .*ca revoke --id ${old.id} --id ${second.id}$`)),
  );
  assert.ok(third.ca.bundle().x509Authorities.some((d) => d.equals(der(root.cert))));
  // The agent API's per-call check, which has seen an SVID under the first CA before the revoke.
  const anchor = new AgentSvidAnchor(third.ca);
  const svid = parseCertificate(onMesh1[0]!);
  assert.ok(anchor.chainsToBundle(svid, clock.now()), 'before the revoke the SVID chains to the corporate root');
  const checked: string[][] = [];
  await third.ca.revoke([old.id, second.id], async (under) => void checked.push([...under]));
  assert.equal(checked.length, 1, 'the agents check ran once, for both');
  assert.equal(anchor.chainsToBundle(svid, clock.now()), false, 'the check still ran on the chain it had seen before the revoke');
  assert.equal(new AgentSvidAnchor(third.ca).chainsToBundle(svid, clock.now()), false);
  assert.deepEqual(third.ca.bundle().x509Authorities, [der(other.cert)], 'the first corporate root has left the bundle');
});
test('a PKI root the upstream CA does not chain to, published beside its own (a PKI root rotation), does not bound the intermediates', async (t) => {
  const { dir, cleanup } = tempDir('meshid-upstream-');
  teardown(t).after(cleanup);
  // The PKI's old root, still published while the last certificates under it live out, and its new one.
  const oldRoot = opensslCa(dir, 'Old Root', { days: 3 });
  const newRoot = opensslCa(dir, 'New Root');
  const meshCa = opensslCa(dir, 'Mesh CA', { issuer: newRoot, days: 365 });
  const bundle = concat(dir, 'roots.pem', [oldRoot.cert, newRoot.cert]);
  const clock = new FakeClock(Date.now());
  const ca = await openTestCa(path.join(dir, 'data'), { upstream_ca_cert: meshCa.cert, upstream_ca_key: meshCa.key, upstream_bundle: bundle }, clock);
  teardown(t).after(() => ca.close());
  await ca.ca.recheck();
  const oldEnd = new Date(new X509Certificate(fs.readFileSync(oldRoot.cert)).validTo).getTime();
  const intermediates = ca.ca.listAuthorities().filter((r) => r.kind === 'intermediate');
  assert.ok(intermediates.length > 0, 'an intermediate is made under the mesh CA');
  for (const a of intermediates) assert.ok(a.notAfter > oldEnd, `${a.id} ends ${new Date(a.notAfter).toISOString()}, bounded by a root its chains do not end at`);
  // Its chains end at the new root, which outlives them.
  assert.deepEqual(ca.ca.bundle().x509Authorities.length, 2);
});

test('the PKI root the upstream CA chains to counts in its lifetime check, as the intermediates are bounded by it', async (t) => {
  const { dir, cleanup } = tempDir('meshid-upstream-');
  teardown(t).after(cleanup);
  const root = opensslCa(dir, 'Short Root', { days: 3 });
  // openssl lets a CA outlive the root it chains to.
  const meshCa = opensslCa(dir, 'Mesh CA', { issuer: root, days: 365 });
  const upstream = loadUpstreamCa({ certFile: meshCa.cert, keyFile: meshCa.key, bundleFile: root.cert });
  assert.throws(() => checkUpstreamLifetime(upstream, Date.now(), 7 * D), refusedWith(/the upstream PKI's root "O=Example Corp, CN=Short Root" expires .*, too soon to cover two intermediate lifetimes/));
  // Another published root, which the CA does not chain to, is not its lifetime.
  const other = opensslCa(dir, 'Other Root', { days: 2 });
  const longRoot = opensslCa(dir, 'Long Root');
  const underLong = opensslCa(dir, 'Mesh CA 2', { issuer: longRoot, days: 365 });
  checkUpstreamLifetime(loadUpstreamCa({ certFile: underLong.cert, keyFile: underLong.key, bundleFile: concat(dir, 'two.pem', [other.cert, longRoot.cert]) }), Date.now(), 7 * D);
  // Nor is the root the PKI rotated to under the same name (another key, long-lived): the CA still chains to the old one.
  const twinDir = tempDir('meshid-upstream-');
  teardown(t).after(twinDir.cleanup);
  const rotatedTo = opensslCa(twinDir.dir, 'Short Root');
  const rotating = loadUpstreamCa({ certFile: meshCa.cert, keyFile: meshCa.key, bundleFile: concat(dir, 'rotating.pem', [rotatedTo.cert, root.cert]) });
  assert.throws(() => checkUpstreamLifetime(rotating, Date.now(), 7 * D), refusedWith(/the upstream PKI's root "O=Example Corp, CN=Short Root" expires .*, too soon/));
});

test('a PKI root of the same name as the one the chain ends at, but another key (a root rotation), is not held to the chain: neither its pathLenConstraint nor its profile refuses the start', async (t) => {
  const { dir, cleanup } = tempDir('meshid-upstream-twin-');
  teardown(t).after(cleanup);
  const subject = '/O=Example Corp/CN=Corporate Root';
  // The PKI's new root, an issuing CA under it (a level the old PKI did not have) and the mesh CA.
  const newRoot = opensslCa(dir, 'New Root', { subject });
  const issuing = opensslCa(dir, 'Issuing CA', { issuer: newRoot });
  const mesh = opensslCa(dir, 'Mesh CA', { issuer: issuing });
  const direct = opensslCa(dir, 'Direct Mesh CA', { issuer: newRoot });
  // The old root, published while what it issued lives out: no room for two CAs below it, and without keyUsage.
  const narrowOld = opensslCa(dir, 'Narrow Old Root', { subject, pathLen: 1 });
  const noKuOld = opensslCa(dir, 'No KU Old Root', { subject, extensions: ['basicConstraints=critical,CA:TRUE', 'subjectKeyIdentifier=hash'] });
  const clock = new FakeClock(Date.now());
  const chain = concat(dir, 'chain.pem', [mesh.cert, issuing.cert]);
  const first = await openTestCa(path.join(dir, 'data-1'), { upstream_ca_cert: chain, upstream_ca_key: mesh.key, upstream_bundle: concat(dir, 'narrow.pem', [narrowOld.cert, newRoot.cert]) }, clock);
  await first.close();
  const second = await openTestCa(path.join(dir, 'data-2'), { upstream_ca_cert: direct.cert, upstream_ca_key: direct.key, upstream_bundle: concat(dir, 'noku.pem', [noKuOld.cert, newRoot.cert]) }, clock);
  await second.close();
  // The root a chain does end at is still held to it, whatever twin is published beside it.
  const issuingUnderNarrow = opensslCa(dir, 'Issuing CA 2', { issuer: narrowOld });
  const meshUnderNarrow = opensslCa(dir, 'Mesh CA 2', { issuer: issuingUnderNarrow });
  await assert.rejects(
    openTestCa(
      path.join(dir, 'data-3'),
      { upstream_ca_cert: concat(dir, 'chain-2.pem', [meshUnderNarrow.cert, issuingUnderNarrow.cert]), upstream_ca_key: meshUnderNarrow.key, upstream_bundle: concat(dir, 'twins.pem', [newRoot.cert, narrowOld.cert]) },
      clock,
    ),
    refusedWith(/"O=Example Corp, CN=Corporate Root" has pathLenConstraint 1, but chains under the upstream CA put 3 CA certificate\(s\) below it/),
  );
});

test('upstream CA files renewed twice before the first renewal activates: the second replaces the first as the one prepared, and the first leaves the bundle', async (t) => {
  const { dir, cleanup } = tempDir('meshid-upstream-renew-twice-');
  teardown(t).after(cleanup);
  const roots = ['Root 2026', 'Root 2027', 'Root 2027b'].map((name) => opensslCa(dir, name));
  const data = path.join(dir, 'data');
  const clock = new FakeClock(Date.now());
  for (const r of roots.slice(0, 2)) await (await openTestCa(data, { upstream_ca_cert: r.cert, upstream_ca_key: r.key }, clock)).close();
  const ca = await openTestCa(data, { upstream_ca_cert: roots[2]!.cert, upstream_ca_key: roots[2]!.key }, clock);
  teardown(t).after(() => ca.close());
  const published = ca.ca.bundle().x509Authorities;
  assert.deepEqual(
    [published.some((r) => r.equals(der(roots[0]!.cert))), published.some((r) => r.equals(der(roots[1]!.cert))), published.some((r) => r.equals(der(roots[2]!.cert)))],
    [true, false, true],
    'the active CA and the latest files, not the renewal they replaced',
  );
  assert.deepEqual(ca.ca.listAuthorities().filter((a) => a.kind === 'root').map((a) => a.state).sort(), ['active', 'prepared']);
});
