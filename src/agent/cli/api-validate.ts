import { runGroup, type Command } from '../../common/cli/command.js';
import { readAll } from '../../common/cli/input.js';
import { invalidArgument } from '../../common/errors.js';
import { OUTPUT_FLAG, outputFormat, renderFields, renderJson, type CliIo } from '../../common/cli/output.js';
import { SOCKET_PATH_FLAG, TIMEOUT_FLAG, withWorkloadClient } from './flags.js';

const validateJwt: Command = {
  name: 'jwt',
  summary: 'Validates a JWT-SVID for an audience (ValidateJWTSVID) and prints its SPIFFE ID and claims.',
  flags: [
    { name: 'audience', type: 'string', valueName: 'AUD', description: 'The audience the token must carry (required)' },
    {
      name: 'svid',
      type: 'string',
      valueName: 'TOKEN',
      description: 'The JWT-SVID to validate (required); - reads it from standard input, out of the shell history and the process list',
    },
    SOCKET_PATH_FLAG,
    TIMEOUT_FLAG,
    OUTPUT_FLAG,
  ],
  async run(args, io) {
    const audience = args.requiredString('audience');
    // On the command line (as spire-agent takes it) a bearer token is in every local user's `ps` while this runs:
    // `--svid -` keeps it off, as `meshid-server token revoke --token -` does for join tokens.
    const given = args.requiredString('svid');
    const svid = given === '-' ? (await readAll(io, '--svid - reads the token from standard input, and there is none', 'the JWT-SVID')).trim() : given;
    if (svid === '') throw invalidArgument('--svid - found no token on standard input');
    const res = await withWorkloadClient(args, io.env, (client) => client.validateJwtSvid(audience, svid));
    if (outputFormat(args) === 'json') {
      io.stdout.write(renderJson({ spiffe_id: res.spiffeId, claims: res.claims }));
      return 0;
    }
    io.stdout.write('SVID is valid.\n' + renderFields([['SPIFFE ID', res.spiffeId], ['Claims', JSON.stringify(res.claims)]], 9));
    return 0;
  },
};

/** `meshid-agent api validate jwt`. */
export async function apiValidateCommand(argv: readonly string[], io: CliIo): Promise<number> {
  return runGroup('meshid-agent api validate', 'Validate tokens with the Workload API.', [validateJwt], argv, io);
}
