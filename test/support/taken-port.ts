import net from 'node:net';
import { once } from 'node:events';
import type { TestContext } from 'node:test';
import { teardown } from './teardown.js';

/**
 * A loopback TCP port this test process holds listening until the test ends: a listener configured on it cannot bind
 * (EADDRINUSE), which fails a start at that listener.
 */
export async function takenLoopbackPort(t: TestContext): Promise<number> {
  const taken = net.createServer().listen(0, '127.0.0.1');
  await once(taken, 'listening');
  teardown(t).after(() => void taken.close());
  return (taken.address() as net.AddressInfo).port;
}
