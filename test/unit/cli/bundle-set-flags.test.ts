import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { serverCli } from '../../../src/server/cli/server-cli.js';
import { captureIo } from './capture-io.js';

// A socket nobody listens on: a refusal that reached the server would be an Unavailable line instead.
const DIR = fs.mkdtempSync(path.join(os.tmpdir(), 'meshid-bundle-set-'));
after(() => fs.rmSync(DIR, { recursive: true, force: true }));

test('bundle set with both --path and --data is refused locally, before the admin socket is asked, whichever holds the bundle', async () => {
  const file = path.join(DIR, 'partner.pem');
  fs.writeFileSync(file, 'not read\n');
  for (const pathValue of [file, '-']) {
    const io = captureIo({ MESHID_ADMIN_SOCKET: path.join(DIR, 'admin.sock') }, '');
    const code = await serverCli(['bundle', 'set', '--trust-domain', 'partner.org', '--path', pathValue, '--data', 'also given'], io);
    assert.equal(code, 1);
    assert.equal(io.out(), '');
    assert.equal(io.err(), 'Error: InvalidArgument: --path and --data exclude each other\n');
  }
});
