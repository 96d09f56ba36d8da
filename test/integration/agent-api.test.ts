/**
 * The server's agent API (meshid.agent.v1.Node) spoken to directly by a test client playing the agent: mTLS with
 * the server's SVID checked against the bundle, join-token attestation, push sync, signing and refusals.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import type { KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { generateKeyPair, importPrivateKey } from '../../src/common/x509/keys.js';
import { createCsr } from '../../src/common/x509/csr.js';
import { pemToDerList } from '../../src/common/x509/pem.js';
import { parseCertificate } from '../../src/common/x509/certificate.js';
import { verifyChain } from '../../src/common/x509/chain-verification.js';
import { AdminClient } from '../../src/server/cli/admin-client.js';
import { tempDir } from '../support/server-kit.js';
import { startServerProcess, type ServerProcess } from '../support/server-process.js';
import { attestAgent, connectNode, joinToken, nodeCall, type AgentIdentity, type NodeClient } from '../support/node-api-client.js';
import { teardown } from '../support/teardown.js';
import { event } from '../support/event.js';

type Client = NodeClient;

let server: ServerProcess;
let cleanup: () => void;
let rootsPem: string;

const connect = (identity?: { chain: Buffer[]; key: KeyObject }): Client => connectNode(server, rootsPem, identity);
const call = nodeCall;
const token = (extra: string[] = []): Promise<string> => joinToken(server, extra);
const attest = (): Promise<AgentIdentity> => attestAgent(server, rootsPem);

before(async () => {
  const t = tempDir('meshid-agent-api-');
  cleanup = t.cleanup;
  server = await startServerProcess(t.dir);
  rootsPem = (await server.cli(['bundle', 'show'])).out;
});

after(async () => {
  await server?.stop();
  cleanup?.();
});

test('Attest with a join token returns an agent SVID from the datacenter intermediate; the token cannot be reused', async () => {
  const { privateKey, publicKey } = generateKeyPair('ec-p256');
  const csr = await createCsr(privateKey, publicKey);
  const t = await token();
  const client = connect();
  try {
    const res = await call<{ spiffe_id: string; svid_chain: Buffer[]; datacenter: string; bundle: { x509_authorities: Buffer[] } }>(client, 'Attest', { join_token: t, csr });
    assert.match(res.spiffe_id, /^spiffe:\/\/example\.org\/meshid\/agent\/east\/[0-9a-f-]{36}$/);
    assert.equal(res.datacenter, 'east');
    assert.equal(res.svid_chain.length, 2, 'leaf + intermediate');
    assert.deepEqual(parseCertificate(res.svid_chain[0]!).uriSans, [res.spiffe_id]);
    assert.ok(parseCertificate(res.svid_chain[1]!).subject.includes('east'));
    verifyChain(res.svid_chain, res.bundle.x509_authorities, Date.now());
    await assert.rejects(call(client, 'Attest', { join_token: t, csr }), (e: grpc.ServiceError) => e.code === grpc.status.PERMISSION_DENIED && /unknown, already used or revoked/.test(e.details));
    await assert.rejects(call(client, 'Attest', { join_token: '', csr }), (e: grpc.ServiceError) => e.code === grpc.status.INVALID_ARGUMENT);
  } finally {
    client.close();
  }
});

// An expired join token's refusal is in join-token-expiry.test.ts, on a FakeClock.
test('calls other than Attest need the agent SVID', async () => {
  const client = connect();
  try {
    const unary: Array<[string, unknown]> = [
      ['SignX509Svids', { items: [] }],
      ['SignJwtSvid', { entry_id: 'e', audience: ['db'] }],
      ['Renew', { csr: Buffer.alloc(0) }],
    ];
    for (const [method, request] of unary) {
      await assert.rejects(call(client, method, request), (e: grpc.ServiceError) => (assert.equal(e.code, grpc.status.UNAUTHENTICATED, `${method}: ${e.details}`), true));
    }
    const sync = client['Sync']!({ since_revision: 0, known: [] }) as grpc.ClientReadableStream<unknown>;
    sync.on('data', () => assert.fail('Sync sent an update to a caller without an agent SVID'));
    const refused = await event('Sync refusing a caller without an agent SVID', new Promise<grpc.ServiceError>((resolve) => sync.once('error', resolve)));
    assert.equal(refused.code, grpc.status.UNAUTHENTICATED, `Sync: ${refused.details}`);
  } finally {
    client.close();
  }
});

test('Sync pushes authorized entries (own, node alias, transitive) as they are created and removals as they are deleted', async () => {
  const agent = await attest();
  const client = connect(agent);
  const updates: Array<{ initial?: boolean; entries?: Array<{ id: string; spiffe_id: string }>; removed_entry_ids?: string[]; bundle?: unknown }> = [];
  const stream = client['Sync']!({ since_revision: 0, known: [] }) as grpc.ClientReadableStream<(typeof updates)[number]>;
  let notify: () => void = () => undefined;
  stream.on('data', (u) => {
    updates.push(u);
    notify();
  });
  stream.on('error', () => undefined);
  const next = (pred: () => boolean): Promise<void> =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no matching update; got ${JSON.stringify(updates)}`)), 10_000);
      const check = (): void => {
        if (pred()) {
          clearTimeout(timer);
          resolve();
        }
      };
      notify = check;
      check();
    });
  const seen = (spiffeId: string): boolean => updates.some((u) => (u.entries ?? []).some((e) => e.spiffe_id === spiffeId));
  try {
    await next(() => updates.length > 0);
    assert.equal(updates[0]!.initial, true);
    assert.ok(updates[0]!.bundle, 'the first update carries the bundle');
    const create = async (args: string[]): Promise<string> => {
      const r = await server.cli(['entry', 'create', ...args]);
      assert.equal(r.code, 0, r.err);
      return /^Entry ID *: (\S+)/m.exec(r.out)![1]!;
    };
    await create(['--parent-id', agent.id, '--spiffe-id', 'spiffe://example.org/direct', '--selector', 'unix:uid:1000']);
    await next(() => seen('spiffe://example.org/direct'));
    await create(['--node', '--spiffe-id', 'spiffe://example.org/node/east-all', '--selector', 'meshid:datacenter:east']);
    const viaAlias = await create(['--parent-id', 'spiffe://example.org/node/east-all', '--spiffe-id', 'spiffe://example.org/via-alias', '--selector', 'unix:uid:1001']);
    const nested = await create(['--parent-id', 'spiffe://example.org/via-alias', '--spiffe-id', 'spiffe://example.org/nested', '--selector', 'unix:uid:1002']);
    await create(['--node', '--spiffe-id', 'spiffe://example.org/node/west-all', '--selector', 'meshid:datacenter:west']);
    await create(['--parent-id', 'spiffe://example.org/node/west-all', '--spiffe-id', 'spiffe://example.org/west-only', '--selector', 'unix:uid:1003']);
    await next(() => seen('spiffe://example.org/via-alias') && seen('spiffe://example.org/nested'));
    assert.equal(seen('spiffe://example.org/west-only'), false, 'entries of another datacenter are never sent');
    assert.equal(seen('spiffe://example.org/node/east-all'), false, 'node alias entries themselves are not served');

    // Signing: authorized entries are signed with the entry's ID (CSR subject/SANs ignored); others refused per item.
    const { privateKey, publicKey } = generateKeyPair('ec-p256');
    const csr = await createCsr(privateKey, publicKey);
    const westOnly = JSON.parse((await server.cli(['entry', 'show', '--spiffe-id', 'spiffe://example.org/west-only', '--output', 'json'])).out).entries[0].id as string;
    const signed = await call<{ results: Array<{ entry_id: string; code?: number; svid_chain?: Buffer[]; message?: string }> }>(client, 'SignX509Svids', {
      items: [{ entry_id: viaAlias, csr }, { entry_id: westOnly, csr }],
    });
    assert.deepEqual(parseCertificate(signed.results[0]!.svid_chain![0]!).uriSans, ['spiffe://example.org/via-alias']);
    assert.equal(signed.results[1]!.code, grpc.status.PERMISSION_DENIED);
    const jwt = await call<{ token: string }>(client, 'SignJwtSvid', { entry_id: viaAlias, audience: ['db'] });
    assert.equal(JSON.parse(Buffer.from(jwt.token.split('.')[1]!, 'base64url').toString()).sub, 'spiffe://example.org/via-alias');
    // As for X.509: an entry of another datacenter's agents, or one that does not exist, is refused, naming the entry.
    for (const entryId of [westOnly, 'no-such-entry']) {
      await assert.rejects(
        call(client, 'SignJwtSvid', { entry_id: entryId, audience: ['db'] }),
        (e: grpc.ServiceError) => e.code === grpc.status.PERMISSION_DENIED && e.details === `entry ${entryId} is not authorized for this agent`,
      );
    }
    // The server bounds audiences itself, whatever the agent checked: a 1 MB audience is not signed into a token.
    await assert.rejects(
      call(client, 'SignJwtSvid', { entry_id: viaAlias, audience: ['x'.repeat(1 << 20)] }),
      (e: grpc.ServiceError) => e.code === grpc.status.INVALID_ARGUMENT && /longer than 1024 bytes/.test(e.details),
    );

    const del = await server.cli(['entry', 'delete', '--entry-id', viaAlias]);
    assert.equal(del.code, 0, del.err);
    // The nested entry hangs off the deleted one: it is no longer authorized either, and leaves with it.
    const removed = (): string[] => updates.flatMap((u) => u.removed_entry_ids ?? []);
    await next(() => removed().includes(viaAlias) && removed().includes(nested));
  } finally {
    stream.cancel();
    client.close();
  }
});

test('Renew rotates the agent SVID; an evicted agent must re-attest and a banned one is refused', async () => {
  const agent = await attest();
  let client = connect(agent);
  try {
    const { privateKey, publicKey } = generateKeyPair('ec-p256');
    const renewed = await call<{ svid_chain: Buffer[] }>(client, 'Renew', { csr: await createCsr(privateKey, publicKey) });
    assert.notEqual(parseCertificate(renewed.svid_chain[0]!).serialHex, parseCertificate(agent.chain[0]!).serialHex);
    client.close();
    client = connect({ chain: renewed.svid_chain, key: privateKey });
    await call(client, 'SignX509Svids', { items: [] });
    assert.equal((await server.cli(['agent', 'evict', '--spiffe-id', agent.id])).code, 0);
    await assert.rejects(call(client, 'SignX509Svids', { items: [] }), (e: grpc.ServiceError) => e.code === grpc.status.PERMISSION_DENIED && /^must re-attest: /.test(e.details));
    client.close();

    const banned = await attest();
    client = connect(banned);
    assert.equal((await server.cli(['agent', 'ban', '--spiffe-id', banned.id])).code, 0);
    await assert.rejects(call(client, 'SignX509Svids', { items: [] }), (e: grpc.ServiceError) => e.code === grpc.status.PERMISSION_DENIED && /^banned: /.test(e.details));
    const listed = await server.cli(['agent', 'show', '--spiffe-id', banned.id, '--output', 'json']);
    assert.equal(JSON.parse(listed.out).banned, true);
  } finally {
    client.close();
  }
});

test('SignX509Svids and Renew refuse a CSR whose signature its key did not make: no SVID for a key the agent does not hold', async () => {
  const agent = await attest();
  const client = connect(agent);
  try {
    const created = await server.cli(['entry', 'create', '--parent-id', agent.id, '--spiffe-id', 'spiffe://example.org/possession', '--selector', 'unix:uid:1000']);
    assert.equal(created.code, 0, created.err);
    const entryId = /^Entry ID *: (\S+)/m.exec(created.out)![1]!;
    const { privateKey, publicKey } = generateKeyPair('ec-p256');
    const forged = Buffer.from(await createCsr(privateKey, publicKey));
    // A byte inside the signature, the CSR's last field: the request still parses, its signature no longer verifies.
    forged[forged.length - 6]! ^= 0x01;
    const signed = await call<{ results: Array<{ code?: number; message?: string; svid_chain?: Buffer[] }> }>(client, 'SignX509Svids', {
      items: [{ entry_id: entryId, csr: forged }],
    });
    assert.equal(signed.results[0]!.code, grpc.status.INVALID_ARGUMENT, signed.results[0]!.message);
    assert.match(signed.results[0]!.message ?? '', /CSR signature does not verify/);
    assert.equal(signed.results[0]!.svid_chain?.length ?? 0, 0);
    await assert.rejects(
      call(client, 'Renew', { csr: forged }),
      (e: grpc.ServiceError) => e.code === grpc.status.INVALID_ARGUMENT && /CSR signature does not verify/.test(e.details),
    );
  } finally {
    client.close();
  }
});

test('an agent SVID two renewals old is neither current nor previous and is refused', async () => {
  const agent = await attest();
  const { privateKey, publicKey } = generateKeyPair('ec-p256');
  const client0 = connect(agent);
  const renewed = await call<{ svid_chain: Buffer[] }>(client0, 'Renew', { csr: await createCsr(privateKey, publicKey) });
  client0.close();
  const { privateKey: k2, publicKey: p2 } = generateKeyPair('ec-p256');
  const client1 = connect({ chain: renewed.svid_chain, key: privateKey });
  await call(client1, 'Renew', { csr: await createCsr(k2, p2) });
  client1.close();
  const stale = connect(agent);
  try {
    await assert.rejects(call(stale, 'SignX509Svids', { items: [] }), (e: grpc.ServiceError) => e.code === grpc.status.PERMISSION_DENIED && /is no longer agent .*'s SVID \(serial [0-9a-f]+\): another holder of this identity renewed it since/.test(e.details));
  } finally {
    stale.close();
  }
});

test('a copy of an agent SVID dies once the agent uses its renewed one, and cannot renew alongside it', async () => {
  const agent = await attest();
  const renewFrom = async (identity: { chain: Buffer[]; key: KeyObject }): Promise<{ chain: Buffer[]; key: KeyObject }> => {
    const { privateKey, publicKey } = generateKeyPair('ec-p256');
    const client = connect(identity);
    try {
      const renewed = await call<{ svid_chain: Buffer[] }>(client, 'Renew', { csr: await createCsr(privateKey, publicKey) });
      return { chain: renewed.svid_chain, key: privateKey };
    } finally {
      client.close();
    }
  };
  const use = async (identity: { chain: Buffer[]; key: KeyObject }): Promise<string> => {
    const client = connect(identity);
    try {
      await call(client, 'SignX509Svids', { items: [] });
      return 'ok';
    } catch (e) {
      return (e as grpc.ServiceError).details;
    } finally {
      client.close();
    }
  };
  const copy = agent; // say, from a backup of the agent's data dir
  // The copy follows the agent's entries on a Sync stream of its own.
  const copyClient = connect(copy);
  const copyStream = copyClient['Sync']!({ since_revision: 0, known: [] }) as grpc.ClientReadableStream<unknown>;
  const copyEnded = new Promise<grpc.ServiceError>((resolve) => copyStream.on('error', resolve));
  await event("the first update on the copy's Sync stream", new Promise((resolve) => copyStream.once('data', resolve)));
  // A renewal answer can be lost: until the new SVID is used, the one it was renewed from still works and renews.
  const lost = await renewFrom(agent);
  assert.equal(await use(copy), 'ok');
  const renewed = await renewFrom(agent);
  assert.match(await use(lost), /is no longer agent .*'s SVID/, 'the unused renewal is replaced');
  // The agent uses its new SVID: the copy is dead, for every call and for renewing.
  assert.equal(await use(renewed), 'ok');
  assert.match(await use(copy), /^must re-attest: the client certificate is no longer agent .*'s SVID \(serial [0-9a-f]+\): another holder of this identity renewed it since \(a copy of the agent's data dir/);
  const ended = await event("the copy's Sync stream ending once the agent used its renewed SVID", copyEnded);
  assert.equal(ended.code, grpc.status.PERMISSION_DENIED);
  assert.match(ended.details, /the SVID this Sync stream was opened with is no longer agent/);
  copyClient.close();
  await assert.rejects(renewFrom(copy), (e: grpc.ServiceError) => e.code === grpc.status.PERMISSION_DENIED);
  assert.equal(await use(await renewFrom(renewed)), 'ok', 'the agent itself goes on renewing');
});

test('an agent holds one Sync stream: a newer one ends the older with UNAVAILABLE', async () => {
  const agent = await attest();
  const client = connect(agent);
  const open = () => {
    const stream = client['Sync']!({ since_revision: 0, known: [] }) as grpc.ClientReadableStream<{ initial?: boolean }>;
    const first = new Promise<unknown>((resolve, reject) => {
      stream.once('data', resolve);
      stream.once('error', reject);
    });
    const ended = new Promise<grpc.ServiceError>((resolve) => stream.on('error', resolve));
    return { stream, first, ended };
  };
  try {
    const older = open();
    await event('the first update on the older Sync stream', older.first);
    const newer = open();
    await event('the first update on the newer Sync stream', newer.first);
    const err = await event('the older Sync stream ending when a newer one opens', older.ended);
    assert.equal(err.code, grpc.status.UNAVAILABLE);
    assert.match(err.details, /superseded by a newer Sync stream/);
    newer.stream.cancel();
  } finally {
    client.close();
  }
});

test('a Sync stream the agent stops reading is not sent one update per change: it gets the net change once it reads again', async () => {
  const agent = await attest();
  const client = connect(agent);
  const admin = new AdminClient(server.adminSocket);
  const updates: Array<{ entries?: Array<{ spiffe_id: string }> }> = [];
  const stream = client['Sync']!({ since_revision: 0, known: [] }) as grpc.ClientReadableStream<(typeof updates)[number]>;
  stream.on('error', () => undefined);
  try {
    await event('the first Sync update', new Promise((resolve) => stream.once('data', resolve)));
    // grpc-js stops reading the HTTP/2 stream while it is paused, so the flow-control window fills.
    stream.pause();
    const changes = 300;
    // ~1.3 KB per entry: a few dozen fill the window and the buffers behind it.
    const dnsNames = Array.from({ length: 20 }, (_, i) => `host-${i}-${'x'.repeat(50)}.example.org`);
    for (let i = 0; i < changes; i++) {
      const res = await admin.call('Entries', 'CreateEntries', {
        entries: [{ spiffe_id: `spiffe://example.org/stalled/${i}`, parent_id: agent.id, selectors: [{ type: 'unix', value: 'uid:1000' }], dns_names: dnsNames }],
      });
      assert.equal(res.results?.[0]?.status?.code ?? 0, 0, JSON.stringify(res.results));
    }
    const seen = new Set<string>();
    const all = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`only ${seen.size} of ${changes} entries arrived`)), 20_000);
      stream.on('data', (u: (typeof updates)[number]) => {
        updates.push(u);
        for (const e of u.entries ?? []) seen.add(e.spiffe_id);
        if (seen.size === changes) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
    stream.resume();
    await all;
    // Nothing lost, and the changes made while the agent did not read came as one update, not one each.
    assert.ok(updates.length < changes / 2, `${updates.length} updates for ${changes} changes`);
  } finally {
    stream.cancel();
    client.close();
    admin.close();
  }
});

test('a workload SVID of the same trust domain is not an agent identity', async () => {
  const dir = tempDir('meshid-mint-');
  try {
    const r = await server.cli(['x509', 'mint', '--spiffe-id', 'spiffe://example.org/tool', '--write', dir.dir]);
    assert.equal(r.code, 0, r.err);
    const chain = pemToDerList(readFileSync(path.join(dir.dir, 'svid.pem'), 'utf8'));
    const key = importPrivateKey(readFileSync(path.join(dir.dir, 'key.pem'), 'utf8'));
    const client = connect({ chain, key });
    try {
      await assert.rejects(call(client, 'SignX509Svids', { items: [] }), (e: grpc.ServiceError) => e.code === grpc.status.PERMISSION_DENIED && /not an agent SVID/.test(e.details));
    } finally {
      client.close();
    }
  } finally {
    dir.cleanup();
  }
});

// Last in this file: it spends the server's attestation budget for 127.0.0.1.
test('attestation attempts are rate limited per source address, before the datastore is touched', async () => {
  const client = connect();
  const { privateKey, publicKey } = generateKeyPair('ec-p256');
  const csr = await createCsr(privateKey, publicKey);
  const outcomes: string[] = [];
  const began = Date.now();
  try {
    // A real server process refills 5 attempts a second on the real clock: how many pass before the refusal depends on
    // how fast this machine sends them. The ceiling is the burst plus what the time taken refilled, not a fixed count
    // (the exact burst, on a FakeClock, is agent-call-gate.test.ts's).
    for (let i = 0; i < 1000 && !outcomes.includes('limited'); i++) {
      outcomes.push(
        await call(client, 'Attest', { join_token: `bogus-${i}`, csr }).then(
          () => 'attested',
          (e: grpc.ServiceError) => (e.code === grpc.status.UNAVAILABLE && /too many attestation attempts from 127\.0\.0\.1; retry in \d+ s/.test(e.details) ? 'limited' : e.details),
        ),
      );
    }
  } finally {
    client.close();
  }
  const refused = outcomes.filter((o) => o.startsWith('join token is unknown, already used or revoked; generate a new one')).length;
  assert.equal(outcomes.at(-1), 'limited', outcomes.slice(-3).join(' | '));
  const ceiling = 100 + Math.ceil((5 * (Date.now() - began)) / 1000) + 1;
  assert.ok(refused >= 90 && refused <= ceiling, `${refused} attempts reached the datastore first (burst 100, at most ${ceiling} with the refill)`);
});

test('a server shutting down ends every Sync stream at once with UNAVAILABLE, so agents reconnect instead of waiting', async (t) => {
  // A server of its own: this one is stopped.
  const dir = tempDir('meshid-agent-api-stop-');
  teardown(t).after(dir.cleanup);
  const own = await startServerProcess(dir.dir);
  teardown(t).after(() => own.stop());
  const roots = (await own.cli(['bundle', 'show'])).out;
  const agent = await attestAgent(own, roots);
  const client = connectNode(own, roots, agent);
  teardown(t).after(() => client.close());
  const stream = client['Sync']!({ since_revision: 0, known: [] }) as grpc.ClientReadableStream<unknown>;
  stream.on('data', () => undefined);
  await event('the first Sync update', new Promise((resolve) => stream.once('data', resolve)));
  const ended = new Promise<grpc.ServiceError>((resolve) => stream.once('error', resolve));
  const exited = own.stop('SIGTERM');
  const err = await event('the Sync stream ending as the server shuts down', ended);
  assert.equal(err.code, grpc.status.UNAVAILABLE);
  assert.equal(err.details, 'meshid-server is shutting down; reconnect');
  assert.equal(await exited, 0, 'and exits cleanly with the agent still connected');
});
