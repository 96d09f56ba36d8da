import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { nodeLabel } from '../../../src/agent/sds/node-validation-mode.js';

describe('nodeLabel', () => {
  it('names the Envoy by the first 256 characters of its node id and cluster', () => {
    assert.deepEqual(nodeLabel({ id: 'sidecar~10.0.0.1', cluster: 'web' }), { nodeId: 'sidecar~10.0.0.1', nodeCluster: 'web' });
    assert.deepEqual(nodeLabel({ id: 'i'.repeat(300), cluster: 'c'.repeat(300) }), { nodeId: 'i'.repeat(256), nodeCluster: 'c'.repeat(256) });
    assert.deepEqual(nodeLabel(undefined), {});
  });

  it('does not keep the request\'s node id alive: a stream holds its label for its life', () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const labels: Array<ReturnType<typeof nodeLabel>> = [];
    gc();
    const before = process.memoryUsage().heapUsed;
    for (let i = 0; i < 20; i++) {
      // A fresh string per request, as a decoded request's is: 20 × 2 MB.
      const id = `${i}-${'i'.repeat(2_000_000)}`;
      const cluster = `${i}-${'c'.repeat(2_000_000)}`;
      labels.push(nodeLabel({ id, cluster }));
    }
    gc();
    const grown = process.memoryUsage().heapUsed - before;
    assert.equal(labels.length, 20);
    assert.ok(grown < 8_000_000, `20 labels keep ${Math.round(grown / 1e6)} MB alive (the node ids and clusters they came from are 80 MB)`);
  });
});
