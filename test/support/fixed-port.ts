import { randomInt } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';

/** The lowest port handed out here: above the usual fixed ports (8080, 8081, 8443…) that tests name literally. */
const LOWEST = 20_000;

/** The first port of the kernel's ephemeral range, which it gives to binds of port 0 and to outgoing connections. */
function ephemeralLow(): number {
  try {
    return Number(fs.readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
  } catch {
    return 32_768;
  }
}

/**
 * A loopback TCP port free now, for a daemon that must be told its port (it cannot be given 0 and report the one it
 * bound) or be given the same one again when restarted.
 *
 * Taken below the kernel's ephemeral range: a port found free by listen(0) lies in that range, and between the probe's
 * close and the daemon's bind (or the daemon's stop and its restart) the kernel may give it to another test file
 * running in parallel, for its own listen(0) or as the local port of any outgoing connection. Below the range only an
 * explicit bind can take it, and no test binds a port there but through here, at random: two files drawing the same
 * port while it is free is what is left, which a start can retry with another port (listen EADDRINUSE).
 */
export async function fixedPort(): Promise<number> {
  const high = ephemeralLow();
  // A machine whose ephemeral range starts low (some containers set 1024) leaves no room below it: then a port the
  // kernel found free, as before, rather than no test of a cluster at all.
  if (!(high - LOWEST >= 1000)) return ephemeralFreePort();
  for (let attempt = 0; ; attempt++) {
    const port = randomInt(LOWEST, high);
    if (await bindable(port)) return port;
    if (attempt === 50) throw new Error(`no free port between ${LOWEST} and ${high} in 50 tries`);
  }
}

function bindable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = net.createServer();
    probe.once('error', () => resolve(false));
    probe.listen(port, '127.0.0.1', () => probe.close(() => resolve(true)));
  });
}

function ephemeralFreePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as net.AddressInfo;
      probe.close(() => resolve(port));
    });
  });
}
