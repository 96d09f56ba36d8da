import { runGroup, type Command } from '../../common/cli/command.js';
import { OUTPUT_FLAG, outputFormat, renderFields, renderJson, type CliIo } from '../../common/cli/output.js';
import { SOCKET_PATH_FLAG, TIMEOUT_FLAG, withWorkloadClient } from './flags.js';

const validateJwt: Command = {
  name: 'jwt',
  summary: 'Validates a JWT-SVID for an audience (ValidateJWTSVID) and prints its SPIFFE ID and claims.',
  flags: [
    { name: 'audience', type: 'string', valueName: 'AUD', description: 'The audience the token must carry (required)' },
    { name: 'svid', type: 'string', valueName: 'TOKEN', description: 'The JWT-SVID to validate (required)' },
    SOCKET_PATH_FLAG,
    TIMEOUT_FLAG,
    OUTPUT_FLAG,
  ],
  async run(args, io) {
    const audience = args.requiredString('audience');
    const svid = args.requiredString('svid');
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
