/**
 * How an operator gives the agent a new join token, as every message asking for one says it: the file first, and the
 * config keys too, since an operator who keeps tokens off command lines (or starts the agent from a config file)
 * would otherwise read --join-token as the only way.
 */
export const NEW_JOIN_TOKEN =
  'a new join token (meshid-server token generate), given as --join-token-file FILE or --join-token (join_token_file or join_token in the config)';
