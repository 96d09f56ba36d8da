import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { socketProblem, unreachableSocket } from '../../../src/common/cli/socket-problem.js';
import { teardown } from '../../support/teardown.js';

const ADVICE = { wrongPath: 'check the path', permission: 'run as its user', down: 'start it' };

/**
 * A connect failure of a kind the CLI does not recognise is quoted from grpc-js, whose details end with
 * "Resolution note: " and nothing after it; the line must not end with that empty label. A real listening socket, so
 * that the path is a socket and the error is what decides.
 */
test('a CLI\'s "cannot reach" line quoting an unrecognised connect error does not end with an empty "Resolution note: "', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshid-socket-problem-'));
  teardown(t).after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const socketPath = path.join(dir, 'api.sock');
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  teardown(t).after(() => server.close());

  const details = 'No connection established. Last error: Error: connect EPROTO /x/api.sock. Resolution note: ';
  assert.deepEqual(socketProblem(socketPath, details), { kind: 'other', detail: 'No connection established. Last error: Error: connect EPROTO /x/api.sock' });
  const err = unreachableSocket('meshid-server', socketPath, details, ADVICE, undefined);
  assert.equal(err.message, `cannot reach meshid-server on ${socketPath} (No connection established. Last error: Error: connect EPROTO /x/api.sock): start it`);

  const noted = 'No connection established. Last error: Error: connect EPROTO /x/api.sock. Resolution note: resolver said so';
  assert.deepEqual(socketProblem(socketPath, noted), { kind: 'other', detail: noted }, 'a note with words in it is kept');
});
