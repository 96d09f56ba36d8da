import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { isMeshidError } from '../../../src/common/errors.js';
import { DEFAULT_SOCKET_PATH, parseEndpointSocket, resolveSocketPath, socketPathSetting } from '../../../src/agent/cli/endpoint-socket.js';

test('SPIFFE_ENDPOINT_SOCKET: unix:///abs and unix:/abs name the same absolute path (percent-decoded)', () => {
  assert.equal(parseEndpointSocket('unix:///run/meshid/agent.sock'), '/run/meshid/agent.sock');
  assert.equal(parseEndpointSocket('unix:/run/meshid/agent.sock'), '/run/meshid/agent.sock');
  assert.equal(parseEndpointSocket('unix:///tmp/a%20b.sock'), '/tmp/a b.sock');
  assert.equal(parseEndpointSocket('unix:///run/a%20b%25%3F.sock'), '/run/a b%?.sock');
  // The scheme is case-insensitive, as go-spiffe reads it.
  assert.equal(parseEndpointSocket('UNIX:///run/meshid/agent.sock'), '/run/meshid/agent.sock');
  assert.equal(resolveSocketPath('Unix:///run/flag.sock', {}), '/run/flag.sock');
});

test('SPIFFE_ENDPOINT_SOCKET: relative, authority, userinfo, query, fragment, tcp and other schemes are invalid_argument', () => {
  const cases: Array<[string, RegExp]> = [
    ['unix:agent.sock', /absolute path/],
    ['unix://host/agent.sock', /authority/],
    ['unix://user@/agent.sock', /userinfo/],
    ['unix:///agent.sock?x=1', /query or fragment/],
    ['unix:///agent.sock#frag', /query or fragment/],
    ['tcp://127.0.0.1:8000', /Unix socket only/],
    ['/run/agent.sock', /unix:\/\/\/absolute\/path URI: write unix:\/\/\/run\/agent\.sock$/],
    // The URI it suggests is one this parser reads back as the same path.
    ['/run/a b%?.sock', /: write unix:\/\/\/run\/a%20b%25%3F\.sock$/],
    ['http:///run/agent.sock', /unix:\/\/\/absolute\/path URI/],
    ['unix:///', /names no socket/],
  ];
  for (const [uri, message] of cases) {
    assert.throws(() => parseEndpointSocket(uri), (e) => isMeshidError(e, 'invalid_argument') && message.test(e.message), uri);
  }
});

test('resolveSocketPath: the flag (path or URI) wins over the environment, which wins over the default', () => {
  const env = { SPIFFE_ENDPOINT_SOCKET: 'unix:///from/env.sock' };
  assert.equal(resolveSocketPath('/from/flag.sock', env), '/from/flag.sock');
  assert.equal(resolveSocketPath('unix:///from/flag-uri.sock', env), '/from/flag-uri.sock');
  assert.equal(resolveSocketPath('relative.sock', env), path.resolve('relative.sock'));
  assert.equal(resolveSocketPath(undefined, env), '/from/env.sock');
  assert.equal(resolveSocketPath(undefined, {}), DEFAULT_SOCKET_PATH);
  assert.equal(resolveSocketPath(undefined, { SPIFFE_ENDPOINT_SOCKET: '' }), DEFAULT_SOCKET_PATH);
  assert.throws(() => resolveSocketPath(undefined, { SPIFFE_ENDPOINT_SOCKET: 'unix:rel' }), (e) => isMeshidError(e, 'invalid_argument'));
});

test('a tcp:// endpoint given as --socket-path or socket_path is refused as in SPIFFE_ENDPOINT_SOCKET, not taken for a relative path', () => {
  const unixOnly = (e: unknown): boolean => isMeshidError(e, 'invalid_argument') && /--socket-path value "tcp:\/\/127\.0\.0\.1:8081": meshid-agent serves the Workload API on a Unix socket only/.test(e.message);
  assert.throws(() => resolveSocketPath('tcp://127.0.0.1:8081', {}), unixOnly);
  assert.throws(() => socketPathSetting('TCP://127.0.0.1:8081', '--socket-path, socket_path'), (e) => isMeshidError(e, 'invalid_argument') && /Unix socket only/.test(e.message));
  // A relative path that merely contains a colon is still a path.
  assert.equal(socketPathSetting('run/tcp:8081.sock', '--socket-path'), path.resolve('run/tcp:8081.sock'));
});
