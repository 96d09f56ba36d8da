import { runGroup, type Command } from '../../common/cli/command.js';
import { readAll } from '../../common/cli/input.js';
import { invalidArgument } from '../../common/errors.js';
import { OUTPUT_FLAG, outputFormat, renderJson, type CliIo } from '../../common/cli/output.js';
import { ADMIN_SOCKET_FLAG, withAdminClient } from './admin-client.js';
import { isoTime } from './entry-output.js';
import { checkSelectors, datacenterFlag, selectorFlag, ttlFlag } from './flags.js';
import { int64 } from './spire-output.js';
import { JOIN_TOKEN_LABEL, joinTokenInText, ONE_TOKEN_EXPECTED } from '../../common/join-token-text.js';

const generate: Command = {
  name: 'generate',
  summary: 'Generates a one-time join token an agent uses to attest (printed once; the server keeps only a hash).',
  flags: [
    datacenterFlag('Datacenter the agent joins (default: the server\'s first datacenter)'),
    ttlFlag('How long the token stays valid, in seconds or like 10m, 1h; 0 or absent: the server default (join_token_ttl, 600 s unless configured)'),
    selectorFlag('Extra node selector recorded on the agent that uses the token'),
    ADMIN_SOCKET_FLAG,
    OUTPUT_FLAG,
  ],
  notSupported: {
    spiffeID:
      'an agent gets its SPIFFE ID (spiffe://<td>/meshid/agent/<datacenter>/<uuid>) when it attests; to give it a name ' +
      'entries can hang from, pass --selector here and create a node alias matching it: `entry create --node --spiffe-id <ID> --selector <the same selector>`',
  },
  async run(args, io) {
    const request = {
      datacenter: args.string('datacenter'),
      ttl: args.seconds('ttl'),
      selectors: checkSelectors(args.strings('selector')),
    };
    const res = await withAdminClient(args, io.env, (client) => client.call('Tokens', 'GenerateJoinToken', request));
    // spire-server prints CreateJoinToken's spire.api.types.JoinToken; the datacenter is in the pretty output.
    if (outputFormat(args) === 'json') io.stdout.write(renderJson({ value: res.token ?? '', expires_at: int64(res.expires_at) }));
    else {
      // stdout holds the one line spire-server prints, so its idiom `token generate | awk '{print $2}'` gets the token
      // alone; the rest goes to stderr, which an operator at a terminal still sees.
      io.stdout.write(`${JOIN_TOKEN_LABEL} ${res.token ?? ''}\n`);
      io.stderr.write(`Expires at: ${isoTime(res.expires_at) ?? 'never'}\nDatacenter: ${res.datacenter ?? ''}\n`);
    }
    return 0;
  },
};

const revoke: Command = {
  name: 'revoke',
  summary: 'Revokes an unused join token before it expires, so no agent can attest with it (e.g. one that leaked); --all revokes every one.',
  flags: [
    {
      name: 'token',
      type: 'string',
      valueName: 'TOKEN',
      description: 'The token value, as `token generate` printed it after "Token: "; - reads it from standard input (alone, or all `token generate` printed), out of the shell history and the process list; required unless --all',
    },
    {
      name: 'all',
      type: 'bool',
      description: 'Revoke every unused join token (only hashes are kept, so they cannot be named one by one), e.g. after restoring a backup; prints how many',
    },
    ADMIN_SOCKET_FLAG,
    OUTPUT_FLAG,
  ],
  async run(args, io) {
    if (args.bool('all') === true) {
      // One token named beside --all is a slip either way: revoking only it or everything would surprise someone.
      if (args.has('token')) throw invalidArgument('--token and --all cannot be used together: --token revokes the one token given, --all every unused one');
      const res = await withAdminClient(args, io.env, (client) => client.call('Tokens', 'RevokeAllJoinTokens', {}));
      const out = { revoked: res.revoked ?? 0 };
      if (outputFormat(args) === 'json') io.stdout.write(renderJson(out));
      else io.stdout.write(`Revoked ${out.revoked} unused join ${out.revoked === 1 ? 'token' : 'tokens'}.\n`);
      return 0;
    }
    const given = args.requiredString('token', '(the join token to revoke, or - to read it from standard input; --all revokes every unused one)');
    const token = given === '-' ? await tokenFromStdin(io) : given;
    const res = await withAdminClient(args, io.env, (client) => client.call('Tokens', 'RevokeJoinToken', { token }));
    const out = { datacenter: res.datacenter ?? '', expires_at: res.expires_at ?? 0 };
    if (outputFormat(args) === 'json') io.stdout.write(renderJson(out));
    else io.stdout.write(`Join token revoked.\nDatacenter: ${out.datacenter}\nWould have expired at: ${isoTime(out.expires_at) ?? 'never'}\n`);
    return 0;
  },
};

/**
 * The token `--token -` reads: standard input holds it alone, or all `token generate` printed (`token generate |
 * token revoke --token -`), never quoted back, as it may hold a token.
 */
async function tokenFromStdin(io: CliIo): Promise<string> {
  const found = joinTokenInText(await readAll(io, '--token - reads the token from standard input, and there is none', 'the join token'));
  if ('token' in found) return found.token;
  if (found.problem === 'empty') throw invalidArgument('--token - found no token on standard input');
  throw invalidArgument(`--token - found more than a join token on standard input (not shown, as it may hold one): standard input ${ONE_TOKEN_EXPECTED}`);
}

/** `meshid-server token generate|revoke`: join tokens for agent attestation (admin API meshid.admin.v1.Tokens). */
export async function tokenCommand(argv: string[], io: CliIo): Promise<number> {
  return runGroup('meshid-server token', 'Manage join tokens.', [generate, revoke], argv, io);
}
