import path from 'node:path';
import { credentials, Metadata, status, type Client, type ClientUnaryCall, type ServiceError } from '@grpc/grpc-js';
import { fromServiceError } from '../../common/grpc-status.js';
import { unavailable } from '../../common/errors.js';
import { formatDuration } from '../../common/duration.js';
import { loadProto } from '../../common/grpc/proto.js';
import { connectionFailure, methodNotServed } from '../../common/grpc/call-failure.js';
import { notSpeakingGrpc } from '../../common/cli/non-grpc-socket.js';
import { watchedUnaryCall, watchForStalledConnection } from '../../common/cli/stalled-connection.js';
import { checkClientSocketPath, unreachableSocket } from '../../common/cli/socket-problem.js';
import { notTheExpectedApi, type ExpectedDaemon } from '../../common/cli/wrong-daemon.js';
import { serviceClient } from '../../common/grpc/service.js';
import type { FlagSpec, ParsedArgs } from '../../common/cli/args.js';
import { DEFAULT_ADMIN_SOCKET } from '../config.js';
import type { AdminMethods, AdminService } from './admin-types.js';

/** The files that define what the admin socket serves. */
export const ADMIN_CLIENT_PROTOS: readonly string[] = ['meshid/v1/admin.proto', 'grpc/health/v1/health.proto'];

/** Environment variable naming the admin socket when --admin-socket is not given. */
export const ADMIN_SOCKET_ENV = 'MESHID_ADMIN_SOCKET';

/** `--admin-socket PATH` (SPIRE: -socketPath), shared by every command that talks to the server. */
export const ADMIN_SOCKET_FLAG: FlagSpec = Object.freeze({
  name: 'admin-socket',
  aliases: ['socketPath'],
  type: 'string',
  valueName: 'PATH',
  description: `Path to the server's admin socket (default $${ADMIN_SOCKET_ENV} or ${DEFAULT_ADMIN_SOCKET})`,
});

/** What answers on an admin socket, for telling the operator they gave another daemon's socket. */
export const ADMIN_SOCKET_DAEMON: ExpectedDaemon = Object.freeze({
  daemon: 'meshid-server',
  socket: 'meshid-server admin socket',
  api: 'the admin API',
  flags: `--admin-socket (-socketPath) or ${ADMIN_SOCKET_ENV}`,
});

/** The service `meshid-server healthcheck` asks the health status of: only meshid-server's admin socket knows it. */
export const ADMIN_HEALTH_SERVICE = 'meshid.admin.v1.Entries';

/**
 * grpc-js refuses answers over 4 MiB by default, after the server did the work: a CreateEntries batch of 10,000 entries
 * answers each with its entry, and a ListEntries page of 500 large entries passes 4 MiB too. The admin socket is the
 * operator's own server, so its answers are taken whatever their size.
 */
const RECEIVE_ANY_SIZE = { 'grpc.max_receive_message_length': -1 };

/** Per-call deadline: a wedged server must not hang a script forever. */
export const DEFAULT_DEADLINE_MS = 30_000;

const SERVICE_NAMES: Record<AdminService, string> = {
  Entries: 'meshid.admin.v1.Entries',
  Tokens: 'meshid.admin.v1.Tokens',
  Bundles: 'meshid.admin.v1.Bundles',
  Agents: 'meshid.admin.v1.Agents',
  Authorities: 'meshid.admin.v1.Authorities',
  Svids: 'meshid.admin.v1.Svids',
  Federation: 'meshid.admin.v1.Federation',
  Backups: 'meshid.admin.v1.Backups',
  Logger: 'meshid.admin.v1.Logger',
  Health: 'grpc.health.v1.Health',
};

/**
 * The admin socket to use: --admin-socket, else $MESHID_ADMIN_SOCKET, else the server's default path. One too long to
 * bind is refused here, before grpc-js connects to it cut short.
 */
export function adminSocketPath(args: ParsedArgs, env: NodeJS.ProcessEnv): string {
  const flag = args.string(ADMIN_SOCKET_FLAG.name);
  const chosen = flag ?? (env[ADMIN_SOCKET_ENV] || DEFAULT_ADMIN_SOCKET);
  return checkClientSocketPath(path.resolve(chosen), flag !== undefined ? '--admin-socket' : env[ADMIN_SOCKET_ENV] ? ADMIN_SOCKET_ENV : 'the default admin socket');
}

type Request<S extends AdminService, M extends keyof AdminMethods[S]> = AdminMethods[S][M] extends [infer Req, unknown] ? Req : never;
type Response<S extends AdminService, M extends keyof AdminMethods[S]> = AdminMethods[S][M] extends [unknown, infer Res] ? Res : never;
type UnaryMethod = (
  request: unknown,
  metadata: Metadata,
  options: { deadline: Date },
  callback: (err: ServiceError | null, res?: unknown) => void,
) => ClientUnaryCall;

/**
 * A client for meshid-server's admin API on its Unix socket (no TLS: reaching the socket is the authorization).
 * One grpc-js client per service, created on first use; `call` is a promisified unary call whose failures are
 * MeshidErrors with the server's code and message. Call close() when done so the process can exit.
 */
export class AdminClient {
  private readonly clients = new Map<AdminService, Client>();

  constructor(
    readonly socketPath: string,
    private readonly deadlineMs = DEFAULT_DEADLINE_MS,
    /** grpc-js channel options, e.g. `{ 'grpc.use_local_subchannel_pool': 1 }` for a connection of its own. */
    private readonly channelOptions: Record<string, number | string> = {},
    /** The flag that set `deadlineMs` (healthcheck's --timeout), named as the way to wait longer when it runs out. */
    private readonly timeoutFlag?: string,
  ) {}

  async call<S extends AdminService, M extends keyof AdminMethods[S] & string>(
    service: S,
    method: M,
    request: Request<S, M>,
  ): Promise<Response<S, M>> {
    const client = this.client(service);
    const fn = (client as unknown as Record<string, UnaryMethod>)[method];
    if (typeof fn !== 'function') throw new Error(`${SERVICE_NAMES[service]} has no method ${method}`);
    // The deadline comes from the injected budget, not from a clock reading in logic.
    const deadline = new Date(Date.now() + this.deadlineMs);
    return watchedUnaryCall<Response<S, M>>(
      watchForStalledConnection(client.getChannel(), this.socketPath, ADMIN_SOCKET_DAEMON),
      (callback) => fn.call(client, request, new Metadata(), { deadline }, callback),
      (err) => this.translate(err),
    );
  }

  close(): void {
    for (const c of this.clients.values()) c.close();
    this.clients.clear();
  }

  private client(service: AdminService): Client {
    let c = this.clients.get(service);
    if (c === undefined) {
      const Ctor = serviceClient(loadProto([...ADMIN_CLIENT_PROTOS]), SERVICE_NAMES[service]);
      c = new Ctor(`unix://${this.socketPath}`, credentials.createInsecure(), { ...RECEIVE_ANY_SIZE, ...this.channelOptions });
      this.clients.set(service, c);
    }
    return c;
  }

  private async translate(err: ServiceError): Promise<Error> {
    // A call that never got a connection: the socket may belong to a program that does not speak gRPC at all.
    const foreign = await notSpeakingGrpc(this.socketPath, ADMIN_SOCKET_DAEMON, err, { ms: this.deadlineMs, flag: this.timeoutFlag });
    if (foreign !== undefined) return foreign;
    // The server answers UNAVAILABLE itself too (a locked datastore, a rate limit): those keep their own message.
    // Lost mid-call counts too: for an operator, the server went away.
    if (connectionFailure(err) !== undefined) {
      return unreachableSocket('meshid-server', this.socketPath, err.details || err.message, {
        wrongPath: `pass the admin socket's own path in --admin-socket or ${ADMIN_SOCKET_ENV}`,
        permission: 'run this as the user meshid-server runs as (or root)',
        down: `is it running? Pass --admin-socket or set ${ADMIN_SOCKET_ENV}`,
      }, err);
    }
    if (err.code === status.DEADLINE_EXCEEDED) {
      // grpc-js's text says where its own machinery stood when time ran out ("waiting for name resolution", "waiting
      // for LB pick"), which reads as a DNS problem on a Unix socket and names neither the socket nor the deadline.
      return unavailable(
        `meshid-server on ${this.socketPath} did not answer within the timeout (${formatDuration(this.deadlineMs)}): is it running and not overloaded?` +
          (this.timeoutFlag !== undefined ? ` A longer ${this.timeoutFlag} gives it more time` : ''),
        err,
      );
    }
    // An agent's socket (or any other gRPC server) answers, but has none of the admin services.
    if (methodNotServed(err)) return notTheExpectedApi(this.socketPath, ADMIN_SOCKET_DAEMON, err);
    return fromServiceError(err);
  }
}


/** Per-call deadline of an admin command: fixed by the command, or set by a flag the timeout message then names. */
export type AdminDeadline = number | { ms: number | undefined; flag: string };

/** Opens an AdminClient for the socket the flags and environment name; `deadline` per call (default 30 s). */
function openAdminClient(args: ParsedArgs, env: NodeJS.ProcessEnv, deadline?: AdminDeadline): AdminClient {
  const socketPath = adminSocketPath(args, env);
  return typeof deadline === 'object' ? new AdminClient(socketPath, deadline.ms, {}, deadline.flag) : new AdminClient(socketPath, deadline);
}

/** Runs `fn` with a client and always closes it, so open channels never keep the CLI process alive. */
export async function withAdminClient<T>(args: ParsedArgs, env: NodeJS.ProcessEnv, fn: (client: AdminClient) => Promise<T>, deadline?: AdminDeadline): Promise<T> {
  const client = openAdminClient(args, env, deadline);
  try {
    return await fn(client);
  } finally {
    client.close();
  }
}

/**
 * The error for one item of a batch response (CreateEntries, DeleteEntries), or undefined when it succeeded.
 * proto3 leaves code 0 (OK) out of the decoded message, so an absent code is success.
 */
export function batchStatusError(s: { code?: number; message?: string } | undefined): Error | undefined {
  const code = s?.code ?? 0;
  if (code === 0) return undefined;
  return fromServiceError({ code, details: s?.message ?? '', message: s?.message ?? '' });
}
