/**
 * The baseline peer for P2: a bare grpc-js server answering grpc.health.v1 Check (a unary echo of a constant) on a
 * Unix socket, in its own process like the agent. Usage: node echo-server.js <socket-path>
 */
import fs from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { loadProto } from '../src/common/grpc/proto.js';
import { serviceOf } from '../src/common/grpc/service.js';
import { GrpcHealthService } from '../src/common/grpc/health-service.js';
import { systemClock } from '../src/common/clock.js';
import { BASE_SERVER_OPTIONS } from '../src/common/grpc/server-options.js';

const socket = process.argv[2]!;
fs.rmSync(socket, { force: true });
// The same base options as meshid's servers: the baseline is grpc-js as meshid runs it, minus meshid — so without
// meshid's interceptors. Its requests still pass the wire check loadProto installs (well under a microsecond for a
// health request); the interceptor that answers a malformed one is left to the agent's side of P2.
const server = new grpc.Server({ ...BASE_SERVER_OPTIONS, interceptors: [] });
server.addService(serviceOf(loadProto('grpc/health/v1/health.proto'), 'grpc.health.v1.Health'), new GrpcHealthService({ services: [], serving: () => true, clock: systemClock, daemon: 'echo server' }).implementation);
server.bindAsync(`unix://${socket}`, grpc.ServerCredentials.createInsecure(), (err) => {
  if (err) throw err;
  process.stdout.write('ready\n');
});
process.on('SIGTERM', () => server.forceShutdown());
