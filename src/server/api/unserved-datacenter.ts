import { invalidArgument, type MeshidError } from '../../common/errors.js';

/**
 * The refusal of a datacenter name this server is not configured with, worded alike wherever an operator names one
 * (token generate, agent list, x509 mint), listing the names that would do.
 */
export function unservedDatacenter(name: string, configured: readonly string[]): MeshidError {
  return invalidArgument(`datacenter "${name}" is not served by this server (configured: ${configured.join(', ')})`);
}
