/**
 * An existing socket directory is the operator's and left alone (workload-endpoint.ts prepareSocketDir), with a
 * warning when other users cannot search it: their workloads could not reach the socket. Search is the x bit; a
 * directory others may read but not search is the case that tells the bits apart.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { withCluster } from '../support/agent-lifecycle-kit.js';

const WARNING = /the socket directory is not searchable by other users/;

test('an existing socket directory others may read but not search is warned about; one they may search but not read is not', () =>
  withCluster('meshid-agent-socket-search-', async (c) => {
    const readable = path.join(c.dir, 'readable');
    fs.mkdirSync(readable);
    fs.chmodSync(readable, 0o754);
    const warned = await c.startAgent({ name: 'readable', joinToken: await c.token(), socketPath: path.join(readable, 'api.sock') });
    assert.match(warned.output(), WARNING);
    assert.equal(fs.statSync(readable).mode & 0o777, 0o754, 'the operator\'s directory is left as it was');
    await warned.stop();

    const searchable = path.join(c.dir, 'searchable');
    fs.mkdirSync(searchable);
    fs.chmodSync(searchable, 0o711);
    const quiet = await c.startAgent({ name: 'searchable', joinToken: await c.token(), socketPath: path.join(searchable, 'api.sock') });
    assert.doesNotMatch(quiet.output(), WARNING);
    await quiet.stop();
  }));
