/**
 * A damaged agent-svid.json (a disk fault or an edit: the agent writes it atomically) with a join token to attest
 * again with: the agent sets the file aside and starts as one whose identity file is missing, serving the SVIDs its
 * stored state holds while the server is down, and attests again once it is back, as SPIRE's agent attests again
 * when its SVID file cannot be read. Without a token it stops, saying what to do. Real server and agent processes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { startCluster, startServerProcess } from '../support/cluster.js';

const uid = process.getuid!();

test('a damaged agent identity file with a join token given is set aside: the agent serves its stored state while the server is down, then attests again', async () => {
  const c = await startCluster('meshid-agent-damaged-id-');
  try {
    await c.createEntry({ spiffeId: 'spiffe://example.org/kept', selectors: [`unix:uid:${uid}`] });
    const first = await c.startAgent({ joinToken: await c.token() });
    assert.deepEqual(await first.svidIds(), ['spiffe://example.org/kept']);
    await first.stop();
    const identityPath = path.join(first.dataDir, 'agent-svid.json');
    fs.writeFileSync(identityPath, '{"format":1,"svid_chain":["damaged"]}');

    // Without a token: refused at start, naming the fix; the file is left as it is.
    const noToken = await c.startAgent({ name: 'no-token', dataDir: first.dataDir, wait: false });
    assert.equal(await noToken.exitCode(), 1);
    assert.match(noToken.output(), /agent-svid\.json cannot be used \(.*\): start the agent with a new join token .*--join-token-file FILE/);
    assert.ok(fs.existsSync(identityPath));

    const token = await c.token();
    const address = c.server.address();
    await c.server.stop();
    const again = await c.startAgent({ name: 'again', dataDir: first.dataDir, joinToken: token, wait: false });
    await again.waitForLog(/the stored agent identity cannot be used; the agent attests again with its configured join token/);
    await again.waitForLog(/listening on Unix socket/);
    assert.deepEqual(await again.svidIds(), ['spiffe://example.org/kept'], 'the stored state is served while the server is down');
    assert.equal(fs.existsSync(identityPath), false);
    assert.equal(fs.readFileSync(path.join(first.dataDir, 'agent-svid.json.damaged'), 'utf8'), '{"format":1,"svid_chain":["damaged"]}', 'kept for inspection');

    await startServerProcess(c, address);
    await again.waitForLog(/"msg":"attested to meshid-server with a join token"/);
    await again.waitForLog(/"msg":"in sync with meshid-server"/);
    assert.ok(fs.existsSync(identityPath), 'a new identity is saved');
    assert.deepEqual(await again.svidIds(), ['spiffe://example.org/kept']);
    await again.stop();
  } finally {
    await c.cleanup();
  }
});
