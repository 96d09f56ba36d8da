import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Metadata, status } from '@grpc/grpc-js';
import { errorCodeName, errorLine, renderFields, renderJson, reportError, toJsonValue } from '../../../src/common/cli/output.js';
import { alreadyExists, invalidArgument, notFound } from '../../../src/common/errors.js';
import { captureIo } from './capture-io.js';

test('pretty fields pad labels to one column and repeat the label for each list element', () => {
  const text = renderFields([
    ['Entry ID', 'e-1'],
    ['Revision', 0],
    ['Selector', ['unix:uid:1000', 'unix:gid:0']],
    ['Admin', true],
  ]);
  assert.equal(
    text,
    'Entry ID         : e-1\n' +
      'Revision         : 0\n' +
      'Selector         : unix:uid:1000\n' +
      'Selector         : unix:gid:0\n' +
      'Admin            : true\n',
  );
});

test('undefined values and empty lists print no line', () => {
  assert.equal(renderFields([['Hint', undefined], ['DNS name', []], ['SPIFFE ID', 'spiffe://td/a']]), 'SPIFFE ID        : spiffe://td/a\n');
});

test('a label longer than the column widens the whole block', () => {
  assert.equal(renderFields([['A', 1], ['A very long label here', 2]], 4), 'A                      : 1\nA very long label here : 2\n');
});

test('JSON output turns bytes into standard base64, as protobuf JSON does, and drops undefined', () => {
  assert.deepEqual(toJsonValue({ a: Buffer.from([0xfb, 0xff]), b: [new Uint8Array([1, 2])], c: undefined, d: { e: 1 } }), {
    a: '+/8=',
    b: ['AQI='],
    d: { e: 1 },
  });
  assert.equal(renderJson({ x: 1 }), '{\n  "x": 1\n}\n');
});

test('error codes print in gRPC spelling', () => {
  assert.equal(errorCodeName('invalid_argument'), 'InvalidArgument');
  assert.equal(errorCodeName('already_exists'), 'AlreadyExists');
  assert.equal(errorCodeName('not_found'), 'NotFound');
});

test('a domain error prints as "Error: <Code>: <message>"', () => {
  assert.equal(
    errorLine(invalidArgument('SPIFFE ID "x" is not a SPIFFE ID: it must start with "spiffe://"')),
    'Error: InvalidArgument: SPIFFE ID "x" is not a SPIFFE ID: it must start with "spiffe://"',
  );
  assert.equal(errorLine(alreadyExists('dup')), 'Error: AlreadyExists: dup');
});

test('a gRPC status from the server keeps its code and message', () => {
  const grpcError = Object.assign(new Error('5 NOT_FOUND: entry e-1 not found'), { code: status.NOT_FOUND, details: 'entry e-1 not found', metadata: new Metadata() });
  assert.equal(errorLine(grpcError), 'Error: NotFound: entry e-1 not found');
});

test('other errors print their message, and every error is exactly one line', () => {
  assert.equal(errorLine(new Error('disk\n  full')), 'Error: disk full');
  assert.equal(errorLine('plain'), 'Error: plain');
});

test('reportError writes the line to stderr only and returns exit status 1', () => {
  const io = captureIo();
  assert.equal(reportError(io, notFound('gone')), 1);
  assert.equal(io.err(), 'Error: NotFound: gone\n');
  assert.equal(io.out(), '');
});
