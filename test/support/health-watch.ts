import * as grpc from '@grpc/grpc-js';
import { loadProto } from '../../src/common/grpc/proto.js';
import { serviceClient } from '../../src/common/grpc/service.js';

/** A grpc.health.v1.Health/Watch stream as a client sees it: each status in order, and how the stream ended. */
export interface HealthWatch {
  /** Statuses received so far. */
  readonly statuses: string[];
  /** Resolves with the statuses once `count` have arrived (or rejects if the stream ends before). */
  received(count: number): Promise<string[]>;
  /** Resolves with the stream's final gRPC status. */
  readonly ended: Promise<grpc.StatusObject>;
  close(): void;
}

/** Opens Watch(`service`) on the gRPC server at `target` (e.g. `unix:///path`). */
export function watchHealth(target: string, service = ''): HealthWatch {
  const Health = serviceClient(loadProto('grpc/health/v1/health.proto'), 'grpc.health.v1.Health');
  const client = new Health(target, grpc.credentials.createInsecure());
  const statuses: string[] = [];
  const waiting: Array<() => void> = [];
  const call = (client as unknown as Record<string, (req: unknown) => grpc.ClientReadableStream<{ status?: string }>>)['Watch']!({ service });
  call.on('data', (m: { status?: string }) => {
    statuses.push(m.status ?? 'UNKNOWN');
    waiting.splice(0).forEach((wake) => wake());
  });
  call.on('error', () => undefined);
  let done = false;
  const ended = new Promise<grpc.StatusObject>((resolve) =>
    call.on('status', (s: grpc.StatusObject) => {
      done = true;
      waiting.splice(0).forEach((wake) => wake());
      resolve(s);
    }),
  );
  return {
    statuses,
    async received(count) {
      while (statuses.length < count) {
        if (done) throw new Error(`the Watch stream ended after ${JSON.stringify(statuses)}`);
        await new Promise<void>((resolve) => waiting.push(resolve));
      }
      return statuses.slice(0, count);
    },
    ended,
    close() {
      call.cancel();
      client.close();
    },
  };
}
