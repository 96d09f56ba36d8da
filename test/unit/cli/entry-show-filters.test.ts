import { after, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { loadProto } from '../../../src/common/grpc/proto.js';
import { serviceOf } from '../../../src/common/grpc/service.js';
import { serverCli } from '../../../src/server/cli/server-cli.js';
import { captureIo } from './capture-io.js';

// The filters `entry show` and `entry count` send: what an operator's script lists is what the server is asked for,
// with spire-server's defaults (superset) when --match or --match-federates-with is left out.

const DIR = fs.mkdtempSync(path.join(os.tmpdir(), 'meshid-entry-filters-'));
after(() => fs.rmSync(DIR, { recursive: true, force: true }));

interface Asked { selector_match?: string; federates_with_match?: string; federates_with_list?: string[]; downstream?: boolean; selectors?: unknown[] }

/** A stand-in admin socket whose ListEntries answers no entry and records each request. */
async function standIn(t: TestContext, pages = 1): Promise<{ socket: string; asked: Asked[] }> {
  const socket = path.join(DIR, `admin-${pages}.sock`);
  const asked: Asked[] = [];
  const server = new grpc.Server();
  server.addService(serviceOf(loadProto(['meshid/v1/admin.proto']), 'meshid.admin.v1.Entries'), {
    ListEntries: (call: { request: Asked & { page_token?: string } }, callback: grpc.sendUnaryData<unknown>) => {
      asked.push(call.request);
      // Page n (its token "n", the first none) holds one entry, in descending SPIFFE ID order; the last page has no next token.
      const n = Number(call.request.page_token || '1');
      if (pages === 1) return callback(null, { entries: [], next_page_token: '' });
      callback(null, {
        entries: [{ id: `entry-${n}`, spiffe_id: `spiffe://example.org/w${pages + 1 - n}`, parent_id: 'spiffe://example.org/meshid/server', selectors: [{ type: 'unix', value: `uid:${n}` }] }],
        next_page_token: n < pages ? String(n + 1) : '',
      });
    },
  });
  await new Promise<void>((resolve, reject) => server.bindAsync(`unix://${socket}`, grpc.ServerCredentials.createInsecure(), (e) => (e ? reject(e) : resolve())));
  t.after(() => server.forceShutdown());
  return { socket, asked };
}

test('entry show and count send superset matching unless --match or --match-federates-with says otherwise, and --downstream=false filters nothing', async (t) => {
  const { socket, asked } = await standIn(t);
  const ask = async (...args: string[]): Promise<Asked> => {
    const io = captureIo({});
    assert.equal(await serverCli([...args, '--admin-socket', socket], io), 0, io.err());
    return asked.at(-1)!;
  };
  for (const command of ['show', 'count']) {
    const bySelectors = await ask('entry', command, '--selector', 'unix:uid:1000', '--selector', 'unix:gid:1000');
    assert.equal(bySelectors.selector_match, 'superset', command);
    assert.equal((await ask('entry', command, '--selector', 'unix:uid:1000', '--match', 'any')).selector_match, 'any', command);
    const byTds = await ask('entry', command, '--federates-with', 'a.org', '--federates-with', 'b.org');
    assert.deepEqual([byTds.federates_with_list, byTds.federates_with_match], [['a.org', 'b.org'], 'superset'], command);
    assert.equal((await ask('entry', command, '--federates-with', 'a.org', '--match-federates-with', 'exact')).federates_with_match, 'exact', command);
    assert.equal((await ask('entry', command, '--downstream')).downstream, true, command);
    // proto3: false is the absent default, which filters nothing.
    assert.notEqual((await ask('entry', command, '--downstream=false')).downstream, true, command);
  }
});

test('entry count and show follow next_page_token to the last page: every matching entry is counted, and listed sorted by SPIFFE ID', async (t) => {
  const { socket, asked } = await standIn(t, 3);
  const count = captureIo({});
  assert.equal(await serverCli(['entry', 'count', '--admin-socket', socket, '--output', 'json'], count), 0, count.err());
  assert.deepEqual(JSON.parse(count.out()), { count: 3 });
  assert.equal(asked.length, 3);
  const show = captureIo({});
  assert.equal(await serverCli(['entry', 'show', '--admin-socket', socket, '--output', 'json'], show), 0, show.err());
  assert.deepEqual((JSON.parse(show.out()) as { entries: Array<{ id: string }> }).entries.map((e) => e.id), ['entry-3', 'entry-2', 'entry-1']);
});
