import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { checkSecurityHeader } from '../../../src/agent/workload/security-header.js';
import { isMeshidError } from '../../../src/common/errors.js';
import { TestCa } from '../../support/fake-workload-cache.js';
import { APP_A, SELECTOR_A, startWorkloadHarness, TD, within, type WorkloadHarness } from './workload-harness.js';

const RPCS = [
  { method: 'FetchX509SVID', stream: true, request: {} },
  { method: 'FetchX509Bundles', stream: true, request: {} },
  { method: 'FetchJWTBundles', stream: true, request: {} },
  { method: 'FetchJWTSVID', stream: false, request: { audience: ['db'] } },
  { method: 'ValidateJWTSVID', stream: false, request: { audience: 'db', svid: 'a.b.c' } },
] as const;

type RawUnary = (req: unknown, md: grpc.Metadata, cb: (err: grpc.ServiceError | null) => void) => void;
type RawStream = (req: unknown, md: grpc.Metadata) => grpc.ClientReadableStream<unknown>;

/** The status a raw call ends with; a stream that delivers a message first reports 'message'. */
function callStatus(client: grpc.Client, method: string, stream: boolean, request: unknown, md: grpc.Metadata): Promise<number | 'message'> {
  return new Promise((resolve) => {
    if (!stream) {
      ((client as unknown as Record<string, RawUnary>)[method]!).call(client, request, md, (err) => resolve(err ? err.code : grpc.status.OK));
      return;
    }
    const call = ((client as unknown as Record<string, RawStream>)[method]!).call(client, request, md);
    call.on('data', () => {
      resolve('message');
      call.cancel();
    });
    call.on('error', (err: grpc.ServiceError) => resolve(err.code));
    call.on('end', () => resolve(grpc.status.OK));
  });
}

function metadata(values: Array<[string, string]>): grpc.Metadata {
  const md = new grpc.Metadata();
  for (const [k, v] of values) md.add(k, v);
  return md;
}

const BAD_HEADERS: Array<[string, Array<[string, string]>]> = [
  ['missing', []],
  ['"True" (case differs)', [['workload.spiffe.io', 'True']]],
  ['"1"', [['workload.spiffe.io', '1']]],
  ['"true " (trailing space)', [['workload.spiffe.io', 'true ']]],
  ['two values', [['workload.spiffe.io', 'true'], ['workload.spiffe.io', 'true']]],
  ['another key only', [['workload.spiffe.io.x', 'true']]],
];

test('checkSecurityHeader accepts exactly one "true" and refuses everything else as invalid_argument', () => {
  assert.doesNotThrow(() => checkSecurityHeader(metadata([['workload.spiffe.io', 'true']])));
  for (const [name, values] of BAD_HEADERS) {
    assert.throws(() => checkSecurityHeader(metadata(values)), (e) => isMeshidError(e, 'invalid_argument'), name);
  }
  const bin = new grpc.Metadata();
  bin.set('workload.spiffe.io-bin', Buffer.from('true'));
  assert.throws(() => checkSecurityHeader(bin), (e) => isMeshidError(e, 'invalid_argument'), '-bin key');
});

test('a security header value that is a comma-joined list (the header sent more than once) is refused saying it must be sent exactly once', () => {
  // How Node's HTTP/2 server hands grpc-js a header a client sent twice: one value, joined.
  for (const [value, count] of [['true, true', 2], ['true,true', 2], ['true, True, 1', 3]] as const) {
    assert.throws(() => checkSecurityHeader(metadata([['workload.spiffe.io', value]])), (e) => {
      assert.ok(isMeshidError(e, 'invalid_argument'), String(e));
      assert.equal(e.message, `security header "workload.spiffe.io" must be sent exactly once, with the value "true"; it arrived with ${count} values`);
      return true;
    }, value);
  }
  assert.throws(() => checkSecurityHeader(metadata([['workload.spiffe.io', 'yes']])), /must be exactly "true"$/, 'a single wrong value is told as before');
});

describe('security header on every Workload API RPC (attestation stubbed)', () => {
  let ca: TestCa;
  let h: WorkloadHarness;
  before(async () => {
    ca = new TestCa(TD);
    h = await startWorkloadHarness(ca, (cache) => cache.addEntry(SELECTOR_A, APP_A));
  });
  after(async () => {
    await h.close();
    ca.dispose();
  });

  for (const rpc of RPCS) {
    test(`${rpc.method}: a bad or missing header is INVALID_ARGUMENT before attestation, even for an unregistered caller`, async () => {
      h.caller = [{ type: 'unix', value: 'uid:4242' }];
      const raw = h.rawClient();
      for (const [name, values] of BAD_HEADERS) {
        const before = h.attestCalls();
        const code = await within(callStatus(raw, rpc.method, rpc.stream, rpc.request, metadata(values)), `${rpc.method} ${name}`);
        assert.equal(code, grpc.status.INVALID_ARGUMENT, `${rpc.method} with header ${name}`);
        assert.equal(h.attestCalls(), before, `${rpc.method} with header ${name} must not reach attestation`);
      }
    });
  }

  test('a client that adds the header twice hears INVALID_ARGUMENT saying to send it exactly once, not that its value is wrong', async () => {
    h.caller = [{ type: 'unix', value: SELECTOR_A.slice('unix:'.length) }];
    const raw = h.rawClient() as unknown as Record<string, RawUnary>;
    const err = await within(
      new Promise<grpc.ServiceError | null>((resolve) => raw['FetchJWTSVID']!.call(raw, { audience: ['db'] }, metadata([['workload.spiffe.io', 'true'], ['workload.spiffe.io', 'true']]), resolve)),
      'FetchJWTSVID with the header twice',
    );
    assert.equal(err?.code, grpc.status.INVALID_ARGUMENT);
    assert.equal(err?.details, 'security header "workload.spiffe.io" must be sent exactly once, with the value "true"; it arrived with 2 values');
  });

  test('the correct header lets an unregistered caller through to attestation: PERMISSION_DENIED, not INVALID_ARGUMENT', async () => {
    h.caller = [{ type: 'unix', value: 'uid:4242' }];
    const raw = h.rawClient();
    const before = h.attestCalls();
    const code = await within(callStatus(raw, 'FetchX509SVID', true, {}, metadata([['workload.spiffe.io', 'true']])), 'FetchX509SVID');
    assert.equal(code, grpc.status.PERMISSION_DENIED);
    assert.equal(h.attestCalls(), before + 1);
  });

  // WL-API §7 (WIT-SVID profile, 2026): a server without the profile MUST answer UNIMPLEMENTED on all its RPCs, and
  // clients (go-spiffe 2.7+) stop their WIT watch on that code alone; whatever the header says, nobody is attested.
  for (const method of ['FetchWITSVID', 'FetchWITBundles']) {
    test(`${method} (optional WIT profile, not offered) is UNIMPLEMENTED with or without the header, never attested`, async () => {
      h.caller = [{ type: 'unix', value: SELECTOR_A.slice('unix:'.length) }];
      const raw = h.rawClient();
      for (const [name, values] of [['the header', [['workload.spiffe.io', 'true']]], ...BAD_HEADERS] as Array<[string, Array<[string, string]>]>) {
        const before = h.attestCalls();
        const code = await within(
          new Promise<number>((resolve) => {
            const call = raw.makeServerStreamRequest(`/SpiffeWorkloadAPI/${method}`, () => Buffer.alloc(0), (b: Buffer) => b, {}, metadata(values));
            call.on('error', (err: grpc.ServiceError) => resolve(err.code));
            call.on('end', () => resolve(grpc.status.OK));
            call.on('data', () => {});
          }),
          `${method} ${name}`,
        );
        assert.equal(code, grpc.status.UNIMPLEMENTED, `${method} with ${name}`);
        assert.equal(h.attestCalls(), before, `${method} with ${name} must not reach attestation`);
      }
    });
  }

  test('the health service on the same socket needs no header', async () => {
    assert.equal(await h.client.health(), 'SERVING');
  });
});

describe('security header without the interceptor: the handler still refuses (safety net)', () => {
  let ca: TestCa;
  let h: WorkloadHarness;
  before(async () => {
    ca = new TestCa(TD);
    h = await startWorkloadHarness(ca, (cache) => cache.addEntry(SELECTOR_A, APP_A), { interceptor: false });
  });
  after(async () => {
    await h.close();
    ca.dispose();
  });

  for (const rpc of RPCS) {
    test(`${rpc.method} without the header is INVALID_ARGUMENT and never attested (stubbed attestation would entitle the caller)`, async () => {
      h.caller = [{ type: 'unix', value: SELECTOR_A.slice('unix:'.length) }];
      const before = h.attestCalls();
      const code = await within(callStatus(h.rawClient(), rpc.method, rpc.stream, rpc.request, new grpc.Metadata()), rpc.method);
      assert.equal(code, grpc.status.INVALID_ARGUMENT);
      assert.equal(h.attestCalls(), before);
    });
  }
});
