import { isIPv4, isIPv6 } from 'node:net';

/**
 * Who a network peer is, for limits per source (Attest attempts, bundle endpoint connections), from "address:port"
 * (grpc-js's peer string): the IPv4 address, or the IPv6 /64 the address is in. A host is routinely given a whole
 * /64, so keying by the full IPv6 address would let one host make 2^64 sources; IPv4-mapped IPv6 addresses count as
 * the IPv4 address they carry.
 */
export function sourceKey(peer: string): string {
  const port = peer.lastIndexOf(':');
  const address = (port > 0 ? peer.slice(0, port) : peer).replace(/%.*$/, '');
  if (isIPv4(address)) return address;
  if (!isIPv6(address)) return address;
  const groups = ipv6Groups(address);
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) {
    return [groups[6]! >> 8, groups[6]! & 0xff, groups[7]! >> 8, groups[7]! & 0xff].join('.');
  }
  return `${groups.slice(0, 4).map((g) => g.toString(16)).join(':')}::/64`;
}

/** The eight 16-bit groups of a valid IPv6 address (isIPv6), "::" and a dotted IPv4 tail expanded. */
function ipv6Groups(address: string): number[] {
  const words = (part: string): number[] => {
    if (part === '') return [];
    return part.split(':').flatMap((w) => {
      if (!w.includes('.')) return [parseInt(w, 16)];
      const [a, b, c, d] = w.split('.').map(Number) as [number, number, number, number];
      return [(a << 8) | b, (c << 8) | d];
    });
  };
  const [head, tail] = address.split('::') as [string, string | undefined];
  if (tail === undefined) return words(head);
  const front = words(head);
  const back = words(tail);
  return [...front, ...new Array<number>(8 - front.length - back.length).fill(0), ...back];
}
