import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { packageRoot } from '../../../src/common/paths.js';

/**
 * Strict request decoding only holds with both halves (strict-requests.ts): without malformedRequestInterceptor a
 * MalformedRequest would reach the handler as a request with no fields set. So every gRPC server under src/ starts
 * from BASE_SERVER_OPTIONS, and one that lists interceptors of its own lists BASE_INTERCEPTORS first (after the agent
 * socket's fairDecodingInterceptor, which decodes the requests the base interceptor then checks).
 */
const EXEMPT: Record<string, string> = {
  // One private method with pass-through codecs: nothing is decoded.
  'src/agent/endpoints/uds-self-test.ts': 'raw codecs',
};

function sources(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return sources(p);
    return e.name.endsWith('.ts') ? [p] : [];
  });
}

test('every gRPC server in src/ starts with BASE_SERVER_OPTIONS and its malformed-request interceptor', () => {
  let servers = 0;
  for (const file of sources(path.join(packageRoot, 'src'))) {
    const relative = path.relative(packageRoot, file);
    // Comments may show how to build a server; only code counts.
    const text = fs.readFileSync(file, 'utf8').replace(/\/\*[\s\S]*?\*\//g, '').replace(/^\s*\/\/.*$/gm, '');
    for (const m of text.matchAll(/new grpc\.Server\(([^;]*?)\);/gs)) {
      servers++;
      if (EXEMPT[relative] !== undefined) continue;
      const args = m[1]!;
      assert.match(args, /BASE_SERVER_OPTIONS/, `${relative}: new grpc.Server(${args})`);
      // uidCallLimitInterceptor and fairDecodingInterceptor may come first: the one counts calls and passes requests
      // on untouched, the other only decodes (its MalformedRequest then meets the base interceptor).
      if (/interceptors:/.test(args)) {
        assert.match(args, /interceptors: \[(uidCallLimitInterceptor\(.*?\), )?(fairDecodingInterceptor\(.*?\), )?\.\.\.BASE_INTERCEPTORS/s, `${relative}: new grpc.Server(${args})`);
      }
    }
  }
  // The admin socket, the agent API, the workload socket and the self-test: the scan found them.
  assert.ok(servers >= 4, `found ${servers} servers`);
});
