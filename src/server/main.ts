#!/usr/bin/env node
/** meshid-server's executable: `meshid-server run | entry | token | bundle | federation | agent | ca | x509 | jwt | backup | restore | logger | healthcheck | validate`. */
import { exitOnBrokenPipe } from '../common/cli/output.js';
import { quietGrpcJsLogForCli } from '../common/grpc/grpc-js-log.js';
import { serverCli } from './cli/server-cli.js';

// `meshid-server entry show | head` closes stdout early: that is the reader's choice, not a failure.
exitOnBrokenPipe(process.stdout);
// One `Error: …` line per failure, not grpc-js's own lines around it; `run` routes them into its log instead.
quietGrpcJsLogForCli(process.env);

// exitCode, not exit(): pending stdout writes to a pipe still flush before the process ends. Not a top-level await:
// the executable is bundled as a CommonJS script so that it can start from a V8 code cache (scripts/bundle.mjs).
void serverCli(process.argv.slice(2), {
  stdout: process.stdout,
  stderr: process.stderr,
  env: process.env,
  // A getter: only commands reading input (`bundle set` without --path, `entry create --data -`, `token revoke --token -`)
  // touch stdin, and only then should a stdin handle exist.
  get stdin() {
    return process.stdin;
  },
}).then((code) => {
  process.exitCode = code;
});
