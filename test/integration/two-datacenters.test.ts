/**
 * One meshid-server process serving two datacenters, east and west, and one meshid-agent process in each, attested
 * with a join token `meshid-server token generate --datacenter <dc>` made for it: the per-datacenter intermediate CA
 * and the token's datacenter binding end to end, judged by the openssl CLI and node:tls rather than meshid's own
 * parser. Each agent serves this test process the SVID of an entry under its own datacenter's node alias.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';
import type { AddressInfo } from 'node:net';
import { certificatesToPem, pemToDerList, splitConcatenatedDer, toPem } from '../../src/common/x509/pem.js';
import type { X509SvidResponse } from '../../src/agent/workload/messages.js';
import { AGENT_MAIN, startCluster, TRUST_DOMAIN, type AgentProcess, type Cluster } from '../support/cluster.js';
import { opensslText, opensslVerify } from '../support/openssl.js';
import { runNode, SERVER_MAIN } from '../support/server-process.js';
import { teardown } from '../support/teardown.js';

const DATACENTERS = ['east', 'west'] as const;
type Datacenter = (typeof DATACENTERS)[number];
const WORKLOAD: Record<Datacenter, string> = { east: `spiffe://${TRUST_DOMAIN}/east/web`, west: `spiffe://${TRUST_DOMAIN}/west/api` };

let cluster: Cluster;
const agents = {} as Record<Datacenter, AgentProcess>;
const served = {} as Record<Datacenter, X509SvidResponse>;

/** `meshid-server token generate --datacenter <dc>` written to a 0600 file, as the README has operators do. */
async function tokenFile(dc: Datacenter, name: string): Promise<string> {
  const r = await runNode(SERVER_MAIN, ['token', 'generate', '--datacenter', dc, '--admin-socket', cluster.server.adminSocket]);
  assert.equal(r.code, 0, r.err);
  assert.match(r.err, new RegExp(`^Datacenter: ${dc}$`, 'm'));
  const file = path.join(cluster.dir, `${name}.token`);
  fs.writeFileSync(file, r.out, { mode: 0o600 });
  return file;
}

function startAgent(name: string, joinTokenFile: string): Promise<AgentProcess> {
  return cluster.startAgent({ name, extraArgs: ['--join-token-file', joinTokenFile] });
}

/** The agent SVID chain (leaf first) the agent stored when it attested. */
function agentChain(agent: AgentProcess): { spiffeId: string; datacenter: string; chain: Buffer[] } {
  const doc = JSON.parse(fs.readFileSync(path.join(agent.dataDir, 'agent-svid.json'), 'utf8')) as { spiffe_id: string; datacenter: string; svid_chain: string[] };
  return { spiffeId: doc.spiffe_id, datacenter: doc.datacenter, chain: doc.svid_chain.map((c) => Buffer.from(c, 'base64')) };
}

/** Subject, issuer and key identifiers as `openssl x509 -text` prints them. */
function names(der: Buffer): { subject: string; issuer: string; ski: string; aki: string | undefined } {
  const text = opensslText(der);
  const line = (re: RegExp): string | undefined => re.exec(text)?.[1]?.trim();
  return {
    subject: line(/^\s*Subject: (.*)$/m)!,
    issuer: line(/^\s*Issuer: (.*)$/m)!,
    ski: line(/X509v3 Subject Key Identifier:\s*\n\s*([0-9A-F:]+)/)!,
    aki: line(/X509v3 Authority Key Identifier:\s*\n\s*(?:keyid:)?([0-9A-F:]+)/),
  };
}

function uriSan(peer: tls.PeerCertificate): string {
  return /URI:([^,]+)/.exec(peer.subjectaltname ?? '')?.[1] ?? '';
}

/** The roots of the server's bundle (admin API GetBundle, as the cluster wrote them for --trust-bundle). */
const bundleRoots = (): Buffer[] => pemToDerList(cluster.bundlePem);

before(async () => {
  cluster = await startCluster('meshid-two-dcs-', ['--datacenter', 'west']);
  const uid = `unix:uid:${process.getuid!()}`;
  for (const dc of DATACENTERS) {
    const alias = `spiffe://${TRUST_DOMAIN}/node/${dc}`;
    await cluster.createEntry({ spiffeId: alias, parentId: `spiffe://${TRUST_DOMAIN}/meshid/server`, selectors: [`meshid:datacenter:${dc}`] });
    await cluster.createEntry({ spiffeId: WORKLOAD[dc], parentId: alias, selectors: [uid] });
  }
  for (const dc of DATACENTERS) agents[dc] = await startAgent(dc, await tokenFile(dc, dc));
  for (const dc of DATACENTERS) {
    const client = agents[dc].client(10_000);
    try {
      // The first message waits for every SVID of the caller.
      served[dc] = await client.fetchX509Svid();
    } finally {
      client.close();
    }
  }
});

after(async () => {
  await cluster?.cleanup();
});

/** The intermediate CA of `dc`: the second certificate of its agent's SVID chain. */
const intermediateOf = (dc: Datacenter): Buffer => agentChain(agents[dc]).chain[1]!;
const otherThan = (dc: Datacenter): Datacenter => (dc === 'east' ? 'west' : 'east');

test('each agent is attested into the datacenter of its join token, with an SVID chained to that datacenter\'s intermediate, and that to the root', async () => {
  const listed = (await cluster.admin.call('Agents', 'ListAgents', {})).agents ?? [];
  assert.equal(listed.length, 2);
  for (const dc of DATACENTERS) {
    const { spiffeId, datacenter, chain } = agentChain(agents[dc]);
    assert.equal(datacenter, dc);
    assert.match(spiffeId, new RegExp(`^spiffe://${TRUST_DOMAIN}/meshid/agent/${dc}/[0-9a-f-]{36}$`));
    assert.equal(chain.length, 2, 'leaf and the datacenter intermediate');
    // The server's record: this agent, in this datacenter, holding this very certificate.
    const record = listed.find((a) => a.spiffe_id === spiffeId);
    assert.equal(record?.datacenter, dc);
    assert.equal(BigInt(`0x${record.cert_serial!.replace(/:/g, '')}`), BigInt(`0x${new crypto.X509Certificate(chain[0]!).serialNumber}`));
    const roots = bundleRoots();
    const own = opensslVerify({ roots, intermediates: [chain[1]!], leaf: chain[0]! });
    assert.ok(own.ok, own.output);
    const up = opensslVerify({ roots, leaf: chain[1]! });
    assert.ok(up.ok, `the ${dc} intermediate does not verify to the root: ${up.output}`);
    const across = opensslVerify({ roots, intermediates: [intermediateOf(otherThan(dc))], leaf: chain[0]! });
    assert.equal(across.ok, false, `the ${dc} agent SVID verifies through the ${otherThan(dc)} intermediate: ${across.output}`);
  }
});

test('each workload X.509-SVID chains to its agent\'s datacenter intermediate, not to the other one, which has its own name and key', async () => {
  const inter = { east: names(intermediateOf('east')), west: names(intermediateOf('west')) };
  assert.notEqual(inter.east.ski, inter.west.ski, 'one key for both datacenters');
  assert.notEqual(inter.east.subject, inter.west.subject, 'both intermediates have one name');
  for (const dc of DATACENTERS) {
    // Each agent serves the entry under its own datacenter's node alias, and not the other's.
    assert.deepEqual(served[dc].svids.map((s) => s.spiffe_id), [WORKLOAD[dc]]);
    const chain = splitConcatenatedDer(served[dc].svids[0]!.x509_svid);
    assert.equal(chain.length, 2, 'leaf and the datacenter intermediate');
    assert.deepEqual(chain[1], intermediateOf(dc), `the ${dc} workload chain carries another intermediate than the ${dc} agent's`);
    const leaf = names(chain[0]!);
    assert.equal(leaf.issuer, inter[dc].subject);
    assert.equal(leaf.aki, inter[dc].ski);
    assert.notEqual(leaf.aki, inter[otherThan(dc)].ski);
    const roots = bundleRoots();
    for (const purpose of ['sslclient', 'sslserver'] as const) {
      const own = opensslVerify({ roots, intermediates: [chain[1]!], leaf: chain[0]!, purpose });
      assert.ok(own.ok, own.output);
    }
    const across = opensslVerify({ roots, intermediates: [intermediateOf(otherThan(dc))], leaf: chain[0]! });
    assert.equal(across.ok, false, `the ${dc} workload SVID verifies through the ${otherThan(dc)} intermediate: ${across.output}`);
  }
});

test('both agents serve one bundle, the same as `bundle show`, holding the root only', async () => {
  const shown = await runNode(SERVER_MAIN, ['bundle', 'show', '--admin-socket', cluster.server.adminSocket]);
  assert.equal(shown.code, 0, shown.err);
  const bundles: Buffer[] = [];
  for (const dc of DATACENTERS) {
    const client = agents[dc].client(10_000);
    try {
      const own = (await client.fetchX509Bundles()).bundles[`spiffe://${TRUST_DOMAIN}`];
      assert.ok(own !== undefined, `the ${dc} agent serves no bundle of ${TRUST_DOMAIN}`);
      bundles.push(own);
    } finally {
      client.close();
    }
    assert.deepEqual(served[dc].svids[0]!.bundle, bundles.at(-1), 'FetchX509SVID and FetchX509Bundles serve different bundles');
  }
  assert.deepEqual(bundles[0], bundles[1]);
  const roots = splitConcatenatedDer(bundles[0]!);
  assert.equal(certificatesToPem(roots), shown.out);
  assert.equal(roots.length, 1, 'the bundle holds more than the root');
  const root = names(roots[0]!);
  assert.equal(root.subject, root.issuer, 'the bundle\'s certificate is not self-signed');
  assert.match(opensslText(roots[0]!), /CA:TRUE/);
  for (const dc of DATACENTERS) assert.notDeepEqual(roots[0], intermediateOf(dc));
});

test('a workload in east and one in west complete mTLS with node:tls, each presenting leaf and intermediate and trusting the bundle', async () => {
  const material = (dc: Datacenter, withIntermediate = true) => {
    const svid = served[dc].svids[0]!;
    const chain = splitConcatenatedDer(svid.x509_svid);
    return {
      cert: certificatesToPem(withIntermediate ? chain : chain.slice(0, 1)),
      key: toPem('PRIVATE KEY', svid.x509_svid_key),
      ca: certificatesToPem(splitConcatenatedDer(svid.bundle)),
    };
  };
  // The server records its verdict on each client (authorized, or the verification error) and answers only one it
  // verified: rejectUnauthorized would cut the other off with nothing said about why.
  const verdicts: string[] = [];
  const server = tls.createServer({ ...material('west'), requestCert: true, rejectUnauthorized: false }, (socket) => {
    if (!socket.authorized) {
      verdicts.push(String(socket.authorizationError));
      socket.destroy();
      return;
    }
    verdicts.push(uriSan(socket.getPeerCertificate()));
    socket.end('ok');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    const connect = (client: ReturnType<typeof material>) =>
      new Promise<string>((resolve, reject) => {
        const socket = tls.connect({
          ...client,
          host: '127.0.0.1',
          port: (server.address() as AddressInfo).port,
          checkServerIdentity: (_h, cert) => (uriSan(cert) === WORKLOAD.west ? undefined : new Error(`unexpected server ${uriSan(cert)}`)),
        });
        let data = '';
        socket.on('data', (d: Buffer) => (data += d.toString()));
        socket.on('end', () => resolve(data));
        socket.on('close', () => resolve(data));
        socket.on('error', reject);
      });
    // The client verified the west server's chain (rejectUnauthorized is node:tls's default), the server the east client's.
    assert.equal(await connect(material('east')), 'ok');
    assert.deepEqual(verdicts, [WORKLOAD.east]);
    // The bundle holds the root only: a client that leaves its intermediate out cannot be verified.
    const outcome = await connect(material('east', false)).catch((err: Error) => err);
    assert.notEqual(outcome, 'ok');
    assert.deepEqual(verdicts, [WORKLOAD.east, 'UNABLE_TO_VERIFY_LEAF_SIGNATURE']);
  } finally {
    server.close();
  }
});

test('the join token decides the datacenter: the agent takes no datacenter setting, and one attested in east stays there when restarted with a token for west', async (t) => {
  // The agent has no setting that names a datacenter: the flag is refused before anything is attested, saying so.
  const refused = await runNode(AGENT_MAIN, ['run', '--datacenter', 'west', '--server-address', cluster.server.address(), '--data-dir', path.join(cluster.dir, 'refused-data')]);
  assert.equal(refused.code, 1, `${refused.out}${refused.err}`);
  assert.match(refused.err, /flag --datacenter is not supported by meshid: the join token decides the agent's datacenter/);

  const first = await startAgent('moved', await tokenFile('east', 'moved-east'));
  teardown(t).after(() => first.stop('SIGKILL'));
  const earlier = agentChain(first);
  assert.equal(earlier.datacenter, 'east');
  assert.equal(await first.stop(), 0);
  const westToken = await tokenFile('west', 'moved-west');
  const again = await startAgent('moved', westToken);
  teardown(t).after(() => again.stop('SIGKILL'));
  await again.waitForLog(/a stored agent SVID is used; the join token is kept for re-attestation only/);
  const later = agentChain(again);
  assert.equal(later.spiffeId, earlier.spiffeId);
  assert.equal(later.datacenter, 'east');
  assert.deepEqual(later.chain[1], intermediateOf('east'));
  assert.deepEqual(await again.svidIds(), [WORKLOAD.east]);
  // Unspent: a new agent attests with it, into west.
  const fresh = await startAgent('fresh-west', westToken);
  teardown(t).after(() => fresh.stop('SIGKILL'));
  const joined = agentChain(fresh);
  assert.equal(joined.datacenter, 'west');
  assert.match(joined.spiffeId, new RegExp(`^spiffe://${TRUST_DOMAIN}/meshid/agent/west/`));
  assert.deepEqual(joined.chain[1], intermediateOf('west'));
  assert.deepEqual(await fresh.svidIds(), [WORKLOAD.west]);
});
