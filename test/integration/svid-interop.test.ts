/**
 * The credentials a real meshid-agent serves, used as independent peers use them: two workloads' X.509-SVIDs (one
 * with DNS names) in mutual TLS, by Node's tls and by `openssl s_server` / `s_client -x509_strict`, with the chain
 * exactly as FetchX509SVID hands it out (leaf + datacenter intermediate) and the SVID's bundle as the only trust; a
 * JWT-SVID checked by WebCrypto against the JWK Set of FetchJWTBundles, without meshid's own validator.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';
import { webcrypto } from 'node:crypto';
import type { X509Svid } from '../../src/agent/workload/messages.js';
import { certificatesToPem, splitConcatenatedDer, toPem } from '../../src/common/x509/pem.js';
import { Cluster, startCluster, type AgentProcess } from '../support/cluster.js';
import { exitedAndRead } from '../support/exited-and-read.js';

const CLIENT_ID = 'spiffe://example.org/interop/client';
const SERVER_ID = 'spiffe://example.org/interop/server';
const SERVER_DNS = 'api.example.org';

let cluster: Cluster;
let agent: AgentProcess;
/** PEM files of one served SVID: chain (leaf first), key, bundle. */
interface SvidFiles {
  chain: string;
  leaf: string;
  intermediates: string;
  key: string;
  bundle: string;
}
const files: Record<string, SvidFiles> = {};

function writeSvid(svid: X509Svid, name: string): SvidFiles {
  const chain = splitConcatenatedDer(svid.x509_svid);
  const out: SvidFiles = {
    chain: path.join(cluster.dir, `${name}-chain.pem`),
    leaf: path.join(cluster.dir, `${name}-leaf.pem`),
    intermediates: path.join(cluster.dir, `${name}-intermediates.pem`),
    key: path.join(cluster.dir, `${name}-key.pem`),
    bundle: path.join(cluster.dir, `${name}-bundle.pem`),
  };
  fs.writeFileSync(out.chain, certificatesToPem(chain));
  fs.writeFileSync(out.leaf, certificatesToPem(chain.slice(0, 1)));
  fs.writeFileSync(out.intermediates, certificatesToPem(chain.slice(1)));
  fs.writeFileSync(out.key, toPem('PRIVATE KEY', svid.x509_svid_key));
  fs.writeFileSync(out.bundle, certificatesToPem(splitConcatenatedDer(svid.bundle)));
  return out;
}

before(async () => {
  cluster = await startCluster('meshid-svid-interop-');
  const uid = process.getuid!();
  await cluster.createEntry({ spiffeId: CLIENT_ID, selectors: [`unix:uid:${uid}`] });
  const created = await cluster.admin.call('Entries', 'CreateEntries', {
    entries: [{ spiffe_id: SERVER_ID, parent_id: Cluster.nodeAlias, selectors: [{ type: 'unix', value: `uid:${uid}` }], dns_names: [SERVER_DNS] }],
  });
  assert.equal(created.results?.[0]?.status?.code ?? 0, 0, JSON.stringify(created.results));
  agent = await cluster.startAgent({ joinToken: await cluster.token() });
  const client = agent.client(10_000);
  try {
    const res = await client.fetchX509Svid();
    for (const [id, name] of [[CLIENT_ID, 'client'], [SERVER_ID, 'server']] as const) {
      const svid = res.svids.find((s) => s.spiffe_id === id);
      assert.ok(svid, `the agent serves ${id}`);
      files[name] = writeSvid(svid, name);
    }
  } finally {
    client.close();
  }
});

after(async () => {
  await cluster?.cleanup();
});

test("Node's tls: two workloads' SVIDs as served complete mutual TLS with their bundle as the only CA, and each side sees the other's SPIFFE ID", async () => {
  const pem = (name: string, part: keyof SvidFiles): string => fs.readFileSync(files[name]![part], 'utf8');
  // What the client saw, checked below with what the server saw: an assertion in its event handler would not fail
  // this test if the handler ran after the test had ended, or never.
  let seenByClient: ((seen: { authorized: boolean; error: string; peer: string | undefined }) => void) | undefined;
  const clientView = new Promise<{ authorized: boolean; error: string; peer: string | undefined }>((resolve) => (seenByClient = resolve));
  const seenByServer = new Promise<string | undefined>((resolve, reject) => {
    const server = tls.createServer(
      { cert: pem('server', 'chain'), key: pem('server', 'key'), ca: pem('server', 'bundle'), requestCert: true, rejectUnauthorized: true },
      (socket) => {
        resolve(socket.getPeerCertificate().subjectaltname);
        socket.end();
        server.close();
      },
    );
    server.on('tlsClientError', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      // SPIFFE peers authenticate the URI SAN, not a host name: checkServerIdentity is replaced, the chain still checked.
      const socket = tls.connect({ host: '127.0.0.1', port, cert: pem('client', 'chain'), key: pem('client', 'key'), ca: pem('client', 'bundle'), checkServerIdentity: () => undefined });
      socket.on('secureConnect', () =>
        seenByClient!({ authorized: socket.authorized, error: String(socket.authorizationError), peer: socket.getPeerCertificate().subjectaltname }),
      );
      socket.on('error', reject);
      socket.resume();
    });
  });
  assert.equal(await seenByServer, `URI:${CLIENT_ID}`);
  const client = await clientView;
  assert.equal(client.authorized, true, client.error);
  assert.equal(client.peer, `URI:${SERVER_ID}, DNS:${SERVER_DNS}`);
});

test('openssl s_server and s_client -x509_strict -verify_return_error: mutual TLS with the chains as served, the server also by its DNS name', async () => {
  const s = files['server']!;
  const c = files['client']!;
  const server = spawn('openssl', [
    's_server', '-accept', '127.0.0.1:0', '-naccept', '1', '-cert', s.leaf, '-cert_chain', s.intermediates, '-key', s.key,
    '-CAfile', s.bundle, '-Verify', '2', '-verify_return_error', '-x509_strict',
  ], { stdio: ['pipe', 'pipe', 'pipe'] }); // stdin left open: s_server shuts down when it ends

  // Apart: which of two pipes a process wrote to first is not the order their data reaches this process.
  let serverOut = '';
  let serverErr = '';
  const exited = exitedAndRead(server);
  server.stdout.on('data', (d: Buffer) => (serverOut += d.toString()));
  server.stderr.on('data', (d: Buffer) => (serverErr += d.toString()));
  try {
    // s_server prints the address it bound once it accepts (an event of the process, not a timing guess).
    let port: string | undefined;
    while ((port = /ACCEPT 127\.0\.0\.1:(\d+)/.exec(serverOut + serverErr)?.[1]) === undefined) {
      if (server.exitCode !== null) assert.fail(`openssl s_server exited: ${serverOut}${serverErr}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    const client = spawnSync('openssl', [
      's_client', '-connect', `127.0.0.1:${port}`, '-cert', c.leaf, '-cert_chain', c.intermediates, '-key', c.key, '-CAfile', c.bundle,
      '-verify_return_error', '-x509_strict', '-verify_hostname', SERVER_DNS,
    ], { input: '', encoding: 'utf8', timeout: 20_000 });
    assert.match(client.stdout, /Verify return code: 0 \(ok\)/, client.stdout + client.stderr);
    assert.match(client.stdout, /Verified peername: api\.example\.org/, client.stdout);
    // -naccept 1: s_server exits after this one connection, having printed the client's certificate only if it verified.
    await exited;
    assert.match(serverErr, /depth=0 O = meshid\nverify return:1\n/, serverErr);
    assert.match(serverOut, /Client certificate[\s\S]*CIPHER is /, serverOut);
  } finally {
    server.kill();
    await exited;
  }
});

test("WebCrypto verifies a served JWT-SVID with the key of its kid from FetchJWTBundles' JWK Set: ES256, raw R‖S, sub and aud as asked", async () => {
  const client = agent.client(10_000);
  try {
    const [svid] = (await client.fetchJwtSvid(['interop'], CLIENT_ID)).svids;
    const jwks = JSON.parse(Buffer.from((await client.fetchJwtBundles()).bundles['spiffe://example.org']!).toString('utf8')) as { keys: Array<webcrypto.JsonWebKey & { kid: string }> };
    const [h, p, sig] = svid!.svid.split('.') as [string, string, string];
    const header = JSON.parse(Buffer.from(h, 'base64url').toString('utf8')) as Record<string, string>;
    const claims = JSON.parse(Buffer.from(p, 'base64url').toString('utf8')) as Record<string, unknown>;
    assert.deepEqual(header, { alg: 'ES256', kid: header['kid'], typ: 'JWT' });
    const jwk = jwks.keys.find((k) => k.kid === header['kid']);
    assert.ok(jwk, `kid ${header['kid']} is in the JWT bundle`);
    // importKey refuses a JWK whose members are off (short coordinates, a `use` other than "sig", private members).
    const key = await webcrypto.subtle.importKey('jwk', jwk, { name: 'ECDSA', namedCurve: 'P-256' }, false, ['verify']);
    const ok = await webcrypto.subtle.verify({ name: 'ECDSA', hash: 'SHA-256' }, key, Buffer.from(sig, 'base64url'), Buffer.from(`${h}.${p}`, 'ascii'));
    assert.equal(ok, true, 'the signature verifies');
    assert.equal(claims['sub'], CLIENT_ID);
    assert.equal(svid!.spiffe_id, CLIENT_ID);
    assert.deepEqual(claims['aud'], ['interop']);
    assert.ok(Number.isInteger(claims['exp']) && Number.isInteger(claims['iat']) && (claims['exp'] as number) > (claims['iat'] as number));
  } finally {
    client.close();
  }
});
