/**
 * A first start's TCP listeners tried before its new data dir is claimed: the agent API, the bundle endpoint and the
 * health check listener bind only once the CA exists (the agent API's mTLS needs the server's SVID), so a port taken
 * failed the start after the data dir was claimed for `--trust-domain` and its CA made, and a retry with another trust
 * domain in that dir was refused. Each address is bound and released at once. A port taken between this probe and the
 * real bind still fails the start later, as before; a claimed data dir is not probed, so a second server on it is
 * told of the data dir's lock, not of the first one's ports. The admin socket is bound after the CA is made too, so
 * its path is tried the same way (probeAdminSocket).
 */
import dns from 'node:dns/promises';
import net from 'node:net';
import { parseHostPort } from '../common/host-port.js';
import { listenFailure } from '../common/listen-failure.js';
import { MeshidError } from '../common/errors.js';
import { staleSocketAt } from '../common/socket-file.js';
import type { ListenerSetting } from './listener-clash.js';

/** How each listener's own failure names its settings (agent-api-server.ts, bundle-endpoint.ts, http-health-listener.ts). */
const SETTINGS: Record<string, string> = {
  bind_address: '--bind-address, bind_address',
  bundle_endpoint_address: '--bundle-endpoint-address, bundle_endpoint_address',
  'health_checks.bind_port': 'health_checks.bind_address, health_checks.bind_port',
};

/** Throws the listener's own listen failure (listen-failure.ts) for the first address that cannot be bound now. */
export async function probeListeners(listeners: readonly ListenerSetting[]): Promise<void> {
  for (const listener of listeners) {
    const { host, port } = parseHostPort(listener.address, listener.setting);
    // Port 0 is the kernel's choice, free by definition.
    if (port === 0) continue;
    for (const address of await addressesOf(host, listener)) {
      try {
        await bindAndRelease(address, port);
      } catch (err) {
        throw listenFailure(err, listener.address, SETTINGS[listener.setting] ?? listener.setting);
      }
    }
  }
}

/**
 * The addresses the listener will bind, as checkListenersResolved resolves them; none for a name that does not
 * resolve, whose listener then refuses it with its own words.
 */
async function addressesOf(host: string, listener: ListenerSetting): Promise<string[]> {
  if (host === '') return ['0.0.0.0'];
  if (net.isIP(host) !== 0) return [host];
  const found = await dns.lookup(host, { all: true }).then((a) => a.map((x) => x.address), () => [] as string[]);
  if (listener.bindsEveryAddress) return found;
  const first = listener.prefersIpv4 === true ? (found.find((a) => net.isIPv4(a)) ?? found[0]) : found[0];
  return first === undefined ? [] : [first];
}

function bindAndRelease(host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen({ host, port, exclusive: true }, () => server.close(() => resolve()));
  });
}

/**
 * Refuses the admin socket's path as the admin API's own start would (admin-server.ts): another live process
 * listening there (another server), or a file that is not a socket. A stale socket file is left for that start to
 * remove, since nothing may be written before the data dir is claimed; what this cannot tell (a directory it may not
 * search) is left for that start to name, in its own words.
 */
export async function probeAdminSocket(socketPath: string, setting: string): Promise<void> {
  try {
    await staleSocketAt(socketPath, setting);
  } catch (err) {
    if (err instanceof MeshidError) throw err;
  }
}
