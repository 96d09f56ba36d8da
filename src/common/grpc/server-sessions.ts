import type http2 from 'node:http2';
import type * as grpc from '@grpc/grpc-js';

/**
 * The HTTP/2 connections open on `server`'s listeners and connection injectors, which grpc-js keeps until their last
 * connection has ended. grpc-js has no public accessor: this reads an internal (`http2Servers`: listener → { sessions
 * }), filled whether channelz is on or not (its `sessions` map is only with channelz, which BASE_SERVER_OPTIONS turns
 * off). Whatever does not have that shape is passed over, so a grpc-js that changed it yields no sessions instead of
 * throwing; the callers' tests (grpc-shutdown, uds-peer) then fail.
 */
export function serverSessions(server: grpc.Server): http2.ServerHttp2Session[] {
  const listeners: unknown = (server as unknown as { http2Servers?: unknown }).http2Servers;
  if (!(listeners instanceof Map)) return [];
  const sessions: http2.ServerHttp2Session[] = [];
  for (const listener of listeners.values() as Iterable<unknown>) {
    const held: unknown = (listener as { sessions?: unknown } | null | undefined)?.sessions;
    if (!(held instanceof Set)) continue;
    for (const s of held as Set<unknown>) if (isSession(s)) sessions.push(s);
  }
  return sessions;
}

function isSession(value: unknown): value is http2.ServerHttp2Session {
  const v = value as Partial<http2.ServerHttp2Session> | null | undefined;
  return typeof v?.destroy === 'function' && typeof v.close === 'function' && typeof v.destroyed === 'boolean' && typeof v.closed === 'boolean';
}
