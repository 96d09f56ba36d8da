import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ServiceDefinition } from '@grpc/grpc-js';
import { FakeClock } from '../../../src/common/clock.js';
import { DEFAULT_CLIENT_RECEIVE_LIMIT, warnOversizedResponses } from '../../../src/agent/workload/oversized-response.js';
import { capturingLogger, LEVEL } from '../../support/log-lines.js';

/*
 * warnOversizedResponses (oversized-response.ts) over a stub method whose serializer returns as many bytes as the
 * response asks for: which sizes are warned of, and which warnings the once-a-minute throttle lets through.
 */

interface Sized {
  size: number;
  svids?: Array<{ spiffe_id: string }>;
}

function stubDefinition(): ServiceDefinition {
  const method = { path: '/SpiffeWorkloadAPI/FetchX509SVID', requestStream: false, responseStream: true, requestSerialize: () => Buffer.alloc(0), requestDeserialize: () => ({}), responseDeserialize: () => ({}) };
  return {
    FetchX509SVID: { ...method, responseSerialize: (value: unknown) => Buffer.alloc((value as Sized).size) },
    FetchX509Bundles: { ...method, path: '/SpiffeWorkloadAPI/FetchX509Bundles', responseSerialize: (value: unknown) => Buffer.alloc((value as Sized).size) },
  } as unknown as ServiceDefinition;
}

function setUp() {
  const clock = new FakeClock();
  const { log, records } = capturingLogger('meshid-agent');
  const definition = warnOversizedResponses(stubDefinition(), ['FetchX509SVID', 'FetchX509Bundles'], log, clock);
  const send = (method: string, value: Sized): number => definition[method]!.responseSerialize(value).length;
  const warnings = () => records().filter((r) => r.level === LEVEL.warn);
  return { clock, send, warnings };
}

const svids = (id: string) => [{ spiffe_id: id }, { spiffe_id: 'spiffe://example.org/other' }];

test('a response of exactly 4 MiB is not warned of; one byte more is, naming the method, its size, count and default identity', () => {
  const { send, warnings } = setUp();
  assert.equal(send('FetchX509SVID', { size: DEFAULT_CLIENT_RECEIVE_LIMIT, svids: svids('spiffe://example.org/a') }), DEFAULT_CLIENT_RECEIVE_LIMIT);
  assert.equal(warnings().length, 0);
  assert.equal(send('FetchX509SVID', { size: DEFAULT_CLIENT_RECEIVE_LIMIT + 1, svids: svids('spiffe://example.org/a') }), DEFAULT_CLIENT_RECEIVE_LIMIT + 1);
  const [w] = warnings();
  assert.equal(warnings().length, 1);
  assert.equal(w!['rpc'], 'FetchX509SVID');
  assert.equal(w!['bytes'], DEFAULT_CLIENT_RECEIVE_LIMIT + 1);
  assert.equal(w!['count'], 2);
  assert.equal(w!['spiffeId'], 'spiffe://example.org/a');
  assert.equal(DEFAULT_CLIENT_RECEIVE_LIMIT, 4 * 1024 * 1024, 'the default of grpc-go, grpc-java, grpc-js and C-core');
});

test('warnings are throttled per method and default identity: another identity or method is still warned of within the minute', () => {
  const { clock, send, warnings } = setUp();
  const big = DEFAULT_CLIENT_RECEIVE_LIMIT + 100;
  send('FetchX509SVID', { size: big, svids: svids('spiffe://example.org/a') });
  send('FetchX509SVID', { size: big, svids: svids('spiffe://example.org/a') });
  assert.equal(warnings().length, 1, 'the same identity again within the minute is left out');
  send('FetchX509SVID', { size: big, svids: svids('spiffe://example.org/b') });
  send('FetchX509Bundles', { size: big });
  assert.deepEqual(warnings().map((w) => [w['rpc'], w['spiffeId']]), [
    ['FetchX509SVID', 'spiffe://example.org/a'],
    ['FetchX509SVID', 'spiffe://example.org/b'],
    ['FetchX509Bundles', undefined],
  ]);
  clock.advance(60_000);
  send('FetchX509SVID', { size: big, svids: svids('spiffe://example.org/a') });
  assert.equal(warnings().length, 4, 'a minute later the first identity is warned of again');
});
