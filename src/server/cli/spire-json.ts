import { invalidArgument } from '../../common/errors.js';
import { refuseDuplicateKeys } from '../../common/json-duplicate-key.js';
import { jsonSyntaxProblem } from '../../common/json-object.js';

/**
 * Parses a file written for spire-server (`entry create|update -data`, `entry delete -file`, `federation create|update
 * -data`). Go's encoding/json matches field names whatever their case and keeps the last of two, so a name given twice
 * in any case is refused by name rather than one of them dropped; a syntax error is located, never quoted.
 */
export function parseSpireJson(text: string, source: string): unknown {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw invalidArgument(`${source} is not valid JSON: ${jsonSyntaxProblem(err, text)}`);
  }
  refuseDuplicateKeys(text, source, { ignoreCase: true });
  return doc;
}
