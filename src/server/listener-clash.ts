import dns from 'node:dns/promises';
import net from 'node:net';
import { invalidArgument, type MeshidError } from '../common/errors.js';
import { parseHostPort } from '../common/host-port.js';

/** One of the server's TCP listeners as configured, named by the setting that gave it. */
export interface ListenerSetting {
  /** The config key, e.g. `bind_address`. */
  setting: string;
  /** HOST:PORT as written (or the default). */
  address: string;
  /** The value is the default, not something the operator wrote. */
  defaulted?: boolean;
  /**
   * grpc-js (the agent API) listens on every address a host name resolves to; node:net (the bundle endpoint) on the
   * first one only.
   */
  bindsEveryAddress: boolean;
  /** Listens on a name's first IPv4 address, else its first (the health check listener: resolveBindHost). */
  prefersIpv4?: boolean;
}

/** Resolves a host name as the listener will: every address, or the first (dns.lookup's order). */
export type ListenLookup = (host: string, all: boolean) => Promise<string[]>;

const systemLookup: ListenLookup = async (host, all) =>
  all ? (await dns.lookup(host, { all: true })).map((a) => a.address) : [(await dns.lookup(host)).address];

/**
 * An IP literal as the kernel compares bound addresses: an IPv4-mapped IPv6 address is its IPv4 address, IPv6 in
 * one spelling (`0:0::0` is `::`). Undefined for a host name.
 */
export function canonicalIp(host: string): string | undefined {
  if (net.isIPv4(host)) return host;
  if (!net.isIPv6(host)) return undefined;
  // A link-local address with its zone (fe80::1%eth0): the URL parser refuses zones, and the zone is part of what
  // the kernel binds, so the address is canonicalized without it and keeps it.
  const zoneAt = host.indexOf('%');
  if (zoneAt >= 0) return `${canonicalIp(host.slice(0, zoneAt)) ?? host.slice(0, zoneAt)}${host.slice(zoneAt)}`;
  // The WHATWG URL parser writes IPv6 in its one canonical (RFC 5952) form.
  const v6 = new URL(`http://[${host}]/`).hostname.slice(1, -1);
  const mapped = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(v6);
  if (mapped === null) return v6;
  const hi = parseInt(mapped[1]!, 16);
  const lo = parseInt(mapped[2]!, 16);
  return `${hi >> 8}.${hi & 0xff}.${lo >> 8}.${lo & 0xff}`;
}

/**
 * Whether two listeners on one port cannot both bind, by the addresses they bind (canonicalIp's): the same address;
 * 0.0.0.0 beside any IPv4 address; `::` beside anything, IPv4 included. Node listens on `::` dual-stack whatever
 * net.ipv6.bindv6only says (libuv clears IPV6_V6ONLY unless asked not to), so `::` holds the port for IPv4 too.
 * 0.0.0.0 beside an IPv6 address, or two different specific addresses, coexist.
 */
export function addressesClash(a: string, b: string): boolean {
  if (a === b || a === '::' || b === '::') return true;
  return (a === '0.0.0.0' && net.isIPv4(b)) || (b === '0.0.0.0' && net.isIPv4(a));
}

interface Resolved {
  listener: ListenerSetting;
  port: number;
  host: string;
  /** Canonical addresses; empty when the name did not resolve (its listen fails later, naming the setting). */
  addresses: string[];
}

function parse(l: ListenerSetting): { host: string; port: number } {
  return parseHostPort(l.address, l.setting);
}

function named(l: ListenerSetting): string {
  return l.defaulted === true ? `${l.setting} (default "${l.address}")` : `${l.setting} "${l.address}"`;
}

/** Why two settings clash, naming both and what the second should do; `taken`: every configured port. */
function clashError(first: Resolved, second: Resolved, a: string, b: string, taken: ReadonlySet<number>): MeshidError {
  const why: string[] = [];
  for (const r of [first, second]) {
    const address = r === first ? a : b;
    if (canonicalIp(r.host) === undefined) why.push(`${r.host} is ${address}`);
  }
  if ((a === '::') !== (b === '::')) why.push(`[::] takes IPv4 as well`);
  return invalidArgument(
    `${named(second.listener)} and ${named(first.listener)} are the same port: the ${first.listener.setting === 'bind_address' ? 'agent API' : first.listener.setting} listens there` +
      (why.length > 0 ? ` (${why.join('; ')})` : '') +
      `; give ${second.listener.setting === 'bundle_endpoint_address' ? 'the bundle endpoint' : second.listener.setting} a port of its own (e.g. ${examplePort(second, taken)})`,
  );
}

/**
 * The port SPIRE operators know for the setting (8443 bundle endpoint, 8080 health), else the next one up that no
 * listener is configured on: an example that is another listener's port would only move the clash.
 */
function examplePort(r: Resolved, taken: ReadonlySet<number>): number {
  const usual = r.listener.setting === 'health_checks.bind_port' ? 8080 : 8443;
  let port = usual;
  // 8081 is skipped too: it is the agent API's default.
  while (taken.has(port) || port === 8081) port++;
  return port;
}

function check(resolved: readonly Resolved[]): void {
  const taken = new Set(resolved.map((r) => r.port));
  for (let i = 0; i < resolved.length; i++) {
    for (let j = i + 1; j < resolved.length; j++) {
      const first = resolved[i]!;
      const second = resolved[j]!;
      // Port 0 is a port of the kernel's choosing, a different one for each listener.
      if (first.port === 0 || first.port !== second.port) continue;
      for (const a of first.addresses) {
        const b = second.addresses.find((x) => addressesClash(a, x));
        if (b !== undefined) throw clashError(first, second, a, b, taken);
      }
    }
  }
}

/**
 * The config compile step's check: listeners whose hosts are IP literals and cannot both bind are refused, before
 * the later one fails EADDRINUSE as if "another process" held a port that is free again once the server has exited.
 * Host names are left to checkListenersResolved, which resolves them. The first listener is the one that binds first.
 */
export function checkLiteralListeners(listeners: readonly ListenerSetting[]): void {
  check(
    listeners.map((listener) => {
      const { host, port } = parse(listener);
      const ip = canonicalIp(host);
      return { listener, host, port, addresses: ip === undefined ? [] : [ip] };
    }),
  );
}

/**
 * checkLiteralListeners with host names resolved as each listener will resolve them, at start and in `validate`: a
 * name given for one and an address for the other (`localhost:8081` beside `127.0.0.1:8081`) clash as surely.
 */
export async function checkListenersResolved(listeners: readonly ListenerSetting[], lookup: ListenLookup = systemLookup): Promise<void> {
  const ports = listeners.map((l) => parse(l).port);
  const resolved = await Promise.all(
    listeners.map(async (listener, i): Promise<Resolved> => {
      const { host, port } = parse(listener);
      const ip = canonicalIp(host);
      if (ip !== undefined) return { listener, host, port, addresses: [ip] };
      // Only a name that shares its port with another listener is looked up: `validate` and start do not wait on a
      // resolver (a slow one, or none reachable where the config is checked) for a clash that cannot be.
      if (port === 0 || !ports.some((p, j) => j !== i && p === port)) return { listener, host, port, addresses: [] };
      const found = await lookup(host, listener.bindsEveryAddress || listener.prefersIpv4 === true).catch(() => [] as string[]);
      const preferred = found.find((a) => net.isIPv4(a)) ?? found[0];
      const addresses = listener.prefersIpv4 !== true ? found : preferred === undefined ? [] : [preferred];
      return { listener, host, port, addresses: addresses.map((a) => canonicalIp(a) ?? a) };
    }),
  );
  check(resolved);
}
