/**
 * The agent API (meshid.agent.v1.Node) against a compromised agent: a test client holding one attested agent's key
 * and SVID, speaking real mTLS gRPC to a meshid-server process, tries to keep or widen what it is entitled to.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { X509Certificate } from 'node:crypto';
import { generateKeyPair } from '../../src/common/x509/keys.js';
import { createCsr } from '../../src/common/x509/csr.js';
import { AdminClient } from '../../src/server/cli/admin-client.js';
import { tempDir } from '../support/server-kit.js';
import { startServerProcess } from '../support/server-process.js';
import { attestAgent, connectNode, nodeCall, type NodeClient } from '../support/node-api-client.js';
import { teardown } from '../support/teardown.js';

const isStatus = (code: grpc.status, details: RegExp) => (e: grpc.ServiceError): boolean => {
  assert.equal(grpc.status[e.code], grpc.status[code], e.details);
  assert.match(e.details, details);
  return true;
};

test('an agent that keeps its connection open past a forced revoke of its root is cut off on it too: no signing, no renewal onto the new root', async (t) => {
  // A server of its own: its root is revoked.
  const { dir, cleanup: removeDir } = tempDir('meshid-hostile-revoke-');
  teardown(t).after(removeDir);
  const own = await startServerProcess(dir);
  teardown(t).after(() => own.stop());
  const oldRoots = (await own.cli(['bundle', 'show'])).out;
  const agent = await attestAgent(own, oldRoots);
  const entry = await (async () => {
    const ownAdmin = new AdminClient(own.adminSocket);
    try {
      const res = await ownAdmin.call('Entries', 'CreateEntries', { entries: [{ spiffe_id: 'spiffe://example.org/kept', parent_id: agent.id, selectors: [{ type: 'unix', value: 'uid:1000' }] }] });
      return res.results![0]!.entry!.id!;
    } finally {
      ownAdmin.close();
    }
  })();
  // The agent ignores the taint it is told of and keeps one connection (and its Sync stream) open throughout.
  const client = connectNode(own, oldRoots, agent);
  teardown(t).after(() => client.close());
  const stream = openSync(client);
  await stream.until((s) => s.holds(entry));
  const ownAdmin = new AdminClient(own.adminSocket);
  teardown(t).after(() => ownAdmin.close());
  const root = ((await ownAdmin.call('Authorities', 'ListAuthorities', {})).authorities ?? []).find((a) => a.kind === 'root' && a.state === 'active')!;
  await ownAdmin.call('Authorities', 'TaintAuthority', { id: root.id! });
  await ownAdmin.call('Authorities', 'RevokeAuthority', { id: root.id!, force: true });

  const cutOff = new RegExp(`^must re-attest: agent ${agent.id}'s SVID no longer chains to the trust bundle \\(its root was revoked\\); attest again with a new join token$`);
  const ended = await Promise.race([stream.ended, new Promise<never>((_, reject) => setTimeout(() => reject(new Error('the Sync stream stayed open after the revoke')), 10_000).unref())]);
  assert.equal(grpc.status[ended.code], 'PERMISSION_DENIED', ended.details);
  assert.match(ended.details, cutOff);
  const { privateKey, publicKey } = generateKeyPair('ec-p256');
  await assert.rejects(nodeCall(client, 'Renew', { csr: await createCsr(privateKey, publicKey) }), isStatus(grpc.status.PERMISSION_DENIED, cutOff));
  await assert.rejects(
    nodeCall(client, 'SignX509Svids', { items: [{ entry_id: entry, csr: await createCsr(privateKey, publicKey) }] }),
    isStatus(grpc.status.PERMISSION_DENIED, cutOff),
  );
  const agents = (await ownAdmin.call('Agents', 'ListAgents', {})).agents ?? [];
  assert.equal(agents.find((a) => a.spiffe_id === agent.id)?.cert_serial, new X509Certificate(agent.chain[0]!).serialNumber.toLowerCase(), 'no renewal was recorded');
});

interface SyncUpdate {
  initial?: boolean;
  entries?: Array<{ id: string; spiffe_id: string }>;
  removed_entry_ids?: string[];
}

interface SyncState {
  readonly initial: boolean;
  holds(entryId: string): boolean;
  seen(spiffeId: string): boolean;
  readonly ended: Promise<grpc.ServiceError>;
  until(pred: (s: SyncState) => boolean): Promise<void>;
  close(): void;
}

/** A Sync stream that keeps the entries its agent holds as the updates say. */
function openSync(client: NodeClient): SyncState {
  const held = new Map<string, string>();
  const spiffeIds = new Set<string>();
  let initial = false;
  let wake: () => void = () => undefined;
  const stream = client['Sync']!({ since_revision: 0, known: [] }) as grpc.ClientReadableStream<SyncUpdate>;
  const ended = new Promise<grpc.ServiceError>((resolve) => stream.on('error', resolve));
  stream.on('data', (u: SyncUpdate) => {
    initial ||= u.initial === true;
    for (const e of u.entries ?? []) {
      held.set(e.id, e.spiffe_id);
      spiffeIds.add(e.spiffe_id);
    }
    for (const id of u.removed_entry_ids ?? []) held.delete(id);
    wake();
  });
  const state: SyncState = {
    get initial() {
      return initial;
    },
    holds: (id: string) => held.has(id),
    seen: (spiffeId: string) => spiffeIds.has(spiffeId),
    ended,
    until(pred: (s: SyncState) => boolean): Promise<void> {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`Sync never got there; holds ${[...held.values()].join(', ')}`)), 10_000);
        wake = () => {
          if (pred(state)) {
            clearTimeout(timer);
            resolve();
          }
        };
        wake();
      });
    },
    close(): void {
      stream.cancel();
      client.close();
    },
  };
  return state;
}
