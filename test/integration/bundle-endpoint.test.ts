/**
 * A real meshid-server process with --bundle-endpoint-address: a federating peer fetches the trust domain's bundle
 * over HTTPS, authenticating the endpoint as SPIRE's https_spiffe profile does (the chain against the bundle's roots,
 * then the SPIFFE ID in the URI SAN), and sees a root rotation as a new spiffe_sequence.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { X509Certificate } from 'node:crypto';
import type { PeerCertificate } from 'node:tls';
import { bundleFromSpiffeJson } from '../../src/common/spiffe/bundle.js';
import { pemToDerList } from '../../src/common/x509/pem.js';
import { opensslSelfSigned } from '../support/openssl.js';
import { SERVER_MAIN, startServerProcess } from '../support/server-process.js';

const SERVER_ID = 'spiffe://example.org/meshid/server';

interface Fetched {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
  peerId: string | undefined;
}

/** One request, trusting only `rootsPem` and checking no host name: https_spiffe authenticates the SPIFFE ID. */
function fetchBundle(port: number, rootsPem: string, method = 'GET'): Promise<Fetched> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      { host: '127.0.0.1', port, method, path: '/', ca: rootsPem, checkServerIdentity: () => undefined, agent: false },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => {
          const peer = (res.socket as unknown as { getPeerCertificate(): PeerCertificate }).getPeerCertificate();
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body, peerId: peer.subjectaltname });
        });
      },
    );
    req.on('error', reject);
    req.end();
  });
}

function endpointPort(output: string): number {
  const m = /"bundleEndpoint":"[^"]*:(\d+)"/.exec(output);
  assert.ok(m, `no bundle endpoint in the server log:\n${output}`);
  return Number(m[1]);
}

test('the bundle endpoint serves the SPIFFE bundle under the server SVID, and a rotation bumps its sequence', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshid-bundle-endpoint-'));
  const server = await startServerProcess(dir, ['--datacenter', 'east', '--bundle-endpoint-address', '127.0.0.1:0', '--bundle-endpoint-refresh-hint', '90s']);
  t.after(async () => {
    await server.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const port = endpointPort(server.output());
  const rootsPem = (await server.cli(['bundle', 'show'])).out;

  const first = await fetchBundle(port, rootsPem);
  assert.equal(first.status, 200);
  assert.equal(first.headers['content-type'], 'application/json');
  assert.equal(first.peerId, `URI:${SERVER_ID}`, 'the endpoint presents the server SVID');
  const doc = JSON.parse(first.body) as { spiffe_sequence: number; spiffe_refresh_hint: number };
  assert.equal(doc.spiffe_refresh_hint, 90, 'the configured hint, which partners poll at');
  const bundle = bundleFromSpiffeJson('example.org', first.body);
  assert.deepEqual(bundle.x509Authorities, pemToDerList(rootsPem), 'the roots `bundle show` prints');
  assert.ok(bundle.jwtAuthorities.length >= 1, 'JWT keys too');
  // The same document as the operator's export.
  assert.deepEqual(JSON.parse(first.body), JSON.parse((await server.cli(['bundle', 'show', '--format', 'spiffe'])).out));

  // Independently: openssl authenticates the chain against the roots under -x509_strict.
  const rootsFile = path.join(dir, 'roots.pem');
  fs.writeFileSync(rootsFile, rootsPem);
  const sClient = spawnSync('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-CAfile', rootsFile, '-verify_return_error', '-x509_strict', '-showcerts'], {
    input: '',
    encoding: 'utf8',
    timeout: 10_000,
  });
  assert.match(sClient.stdout, /Verify return code: 0 \(ok\)/, sClient.stdout + sClient.stderr);
  const [leaf] = pemToDerList(sClient.stdout);
  assert.equal(new X509Certificate(leaf!).subjectAltName, `URI:${SERVER_ID}`);

  // Federation §5.1: TLS bundle endpoints follow Mozilla's "intermediate" configuration. Under TLS 1.2 that is the
  // ECDHE AEAD suites only: a client offering nothing but CBC suites (SHA-1 or SHA-2 MACs) gets no handshake.
  // 'refused' only for the server's handshake_failure alert: a client that could not offer the suite at all (a
  // cipher name its openssl lacks, no connection) says something else, and must not pass for a refusal.
  const handshake = (cipher: string): string => {
    const r = spawnSync('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-tls1_2', '-cipher', cipher], { input: '', encoding: 'utf8', timeout: 10_000 });
    const suite = /Cipher is (\S+)/.exec(r.stdout)?.[1];
    if (suite !== undefined && suite !== '(NONE)') return suite;
    return /alert handshake failure/.test(r.stderr) ? 'refused' : `no handshake: ${r.stdout}${r.stderr}`;
  };
  for (const cbc of ['ECDHE-ECDSA-AES128-SHA', 'ECDHE-ECDSA-AES256-SHA', 'ECDHE-ECDSA-AES128-SHA256', 'ECDHE-ECDSA-AES256-SHA384']) {
    assert.equal(handshake(cbc), 'refused', `${cbc} is outside Mozilla intermediate`);
  }
  for (const aead of ['ECDHE-ECDSA-AES128-GCM-SHA256', 'ECDHE-ECDSA-AES256-GCM-SHA384', 'ECDHE-ECDSA-CHACHA20-POLY1305']) {
    assert.equal(handshake(aead), aead);
  }

  // A peer holding other roots cannot be fooled into accepting the endpoint (the check above is not vacuous).
  const stranger = opensslSelfSigned({ subject: '/CN=stranger', extensions: ['basicConstraints=critical,CA:true', 'keyUsage=critical,keyCertSign'], serial: '01', days: 1 });
  const strangerPem = `-----BEGIN CERTIFICATE-----\n${stranger.toString('base64')}\n-----END CERTIFICATE-----\n`;
  await assert.rejects(fetchBundle(port, strangerPem), /self[- ]signed|unable to (get|verify)|certificate/i);

  // A new root is published at once: the next fetch has it, under a higher sequence.
  assert.equal((await server.cli(['ca', 'rotate-root'])).code, 0);
  const second = await fetchBundle(port, rootsPem);
  const rotated = bundleFromSpiffeJson('example.org', second.body);
  assert.equal(rotated.x509Authorities.length, 2);
  assert.ok(rotated.sequence > bundle.sequence, `sequence ${rotated.sequence} after ${bundle.sequence}`);

  const post = await fetchBundle(port, rootsPem, 'POST');
  assert.equal(post.status, 405);
  assert.equal(post.headers['allow'], 'GET, HEAD');
});

test('a bundle endpoint address that is not HOST:PORT is refused before anything starts', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshid-bundle-endpoint-bad-'));
  try {
    const r = spawnSync(process.execPath, [
      SERVER_MAIN, 'validate', '--trust-domain', 'example.org', '--data-dir', dir, '--bundle-endpoint-address', '8443',
    ], { encoding: 'utf8' });
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /bundle_endpoint_address "8443" is not HOST:PORT/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
