/**
 * The agent API's signing budget counts P-256 CSRs: a P-384 CSR, whose proof of possession costs the server about
 * five P-256 CSRs to check, is charged five tokens, so an agent cannot spend the event loop five times faster than
 * its budget says by choosing its key type, nor, with a call larger than its budget, get more than the budget.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import fs from 'node:fs';
import path from 'node:path';
import { generateKeyPair, type KeyType } from '../../src/common/x509/keys.js';
import { createCsr } from '../../src/common/x509/csr.js';
import { tempDir } from '../support/server-kit.js';
import { startServerProcess } from '../support/server-process.js';
import { attestAgent, connectNode, nodeCall } from '../support/node-api-client.js';
import { teardown } from '../support/teardown.js';

interface SignResults {
  results: Array<{ code?: number; message?: string; svid_chain?: Buffer[] }>;
}

test('a P-384 CSR is charged five P-256 ones; a refused batch gives back all it took; one no budget holds is refused outright', async (t) => {
  const { dir, cleanup } = tempDir('meshid-signing-limits-');
  teardown(t).after(cleanup);
  const configFile = path.join(dir, 'server.json');
  // The smallest budget allowed (one full call of P-256 CSRs), refilling too slowly to matter within the test.
  fs.writeFileSync(configFile, JSON.stringify({ agent_sign_rate: 0.0001, agent_sign_burst: 1000 }));
  const server = await startServerProcess(path.join(dir, 'server'), ['--config', configFile, '--datacenter', 'east']);
  teardown(t).after(() => server.stop());
  const alias = await server.cli(['entry', 'create', '--node', '--spiffe-id', 'spiffe://example.org/node/east', '--selector', 'meshid:datacenter:east']);
  assert.equal(alias.code, 0, alias.err);
  const created = await server.cli(['entry', 'create', '--parent-id', 'spiffe://example.org/node/east', '--spiffe-id', 'spiffe://example.org/web', '--selector', 'unix:uid:1000']);
  assert.equal(created.code, 0, created.err);
  const entryId = /^Entry ID *: (\S+)/m.exec(created.out)![1]!;
  const rootsPem = (await server.cli(['bundle', 'show'])).out;
  const agent = await attestAgent(server, rootsPem);
  const client = connectNode(server, rootsPem, agent);
  teardown(t).after(() => client.close());

  const csr = async (type: KeyType): Promise<Buffer> => {
    const { privateKey, publicKey } = generateKeyPair(type);
    return createCsr(privateKey, publicKey);
  };
  const sign = async (types: KeyType[]): Promise<string> => {
    const items = await Promise.all(types.map(async (type) => ({ entry_id: entryId, csr: await csr(type) })));
    return nodeCall<SignResults>(client, 'SignX509Svids', { items }).then(
      (res) => res.results.map((r) => (r.code ?? 0) === 0 && r.svid_chain?.length ? 'signed' : r.message).join(','),
      (err: grpc.ServiceError) => `${grpc.status[err.code]}: ${err.details}`,
    );
  };

  // More than the budget holds, in one call, is refused outright: no wait would let it through.
  assert.match(await sign(Array<KeyType>(201).fill('ec-p384')), /^INVALID_ARGUMENT: this request costs 1005 signing tokens, more than an agent's budget holds \(agent_sign_burst 1000/);
  const many = Array<KeyType>(198).fill('ec-p384');
  assert.equal(await sign(many), many.map(() => 'signed').join(','), '198 P-384 CSRs take 990 of 1000 tokens');
  assert.match(await sign(['ec-p384', 'ec-p384', 'ec-p384']), /^RESOURCE_EXHAUSTED: signing rate limit reached; retry in \d+ s$/, 'three more need 15, 10 are left');
  // The refusal gave back the 3 tokens taken before the keys were known: ten P-256 CSRs still fit, an eleventh does not.
  assert.equal(await sign(Array<KeyType>(10).fill('ec-p256')), Array(10).fill('signed').join(','));
  assert.match(await sign(['ec-p256']), /^RESOURCE_EXHAUSTED: signing rate limit reached/);
});
