import { invalidArgument } from './errors.js';

/** A key that appears twice in one JSON object: where, and under which object. */
export interface DuplicateKey {
  /** The key as JSON.parse decodes it ("a\u0062" is "ab"). */
  readonly key: string;
  /** The object holding it, as a path from the top: "" for the top level, "sds", "federates_with[1]". */
  readonly within: string;
  /** 1-based lines of the first and the second occurrence. */
  readonly firstLine: number;
  readonly line: number;
}

interface ObjectFrame {
  readonly kind: 'object';
  readonly path: string;
  readonly keys: Map<string, number>;
  /** The key whose value comes next (after the ':'), naming a nested object or array. */
  key: string | undefined;
  expectKey: boolean;
}

interface ArrayFrame {
  readonly kind: 'array';
  readonly path: string;
  index: number;
}

export interface DuplicateKeyOptions {
  /**
   * Keys equal up to case are the same key: for files in the format of spire-server's, whose names Go's
   * encoding/json matches whatever their case (`SPIFFE_ID` sets spiffe_id, and of the two the last wins).
   */
  readonly ignoreCase?: boolean;
}

/**
 * The first key that appears twice in one object of `text`, which must be valid JSON (parse it first: this scanner
 * assumes it, and only keeps its place). JSON.parse keeps the last value of a repeated key without a word, so a config
 * file with `trust_domain` twice would silently run with the second; RFC 8259 §4 leaves duplicate names' meaning open
 * ("names within an object SHOULD be unique"). Keys are compared decoded, so `"a"` and `"\u0061"` are the same key.
 */
export function firstDuplicateKey(text: string, options: DuplicateKeyOptions = {}): DuplicateKey | undefined {
  const stack: Array<ObjectFrame | ArrayFrame> = [];
  let line = 1;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === '\n') {
      line++;
    } else if (c === '{' || c === '[') {
      const path = childPath(stack[stack.length - 1]);
      stack.push(c === '{' ? { kind: 'object', path, keys: new Map(), key: undefined, expectKey: true } : { kind: 'array', path, index: 0 });
    } else if (c === '}' || c === ']') {
      stack.pop();
    } else if (c === ',') {
      const top = stack[stack.length - 1];
      if (top?.kind === 'object') top.expectKey = true;
      else if (top?.kind === 'array') top.index++;
    } else if (c === '"') {
      const end = stringEnd(text, i);
      const top = stack[stack.length - 1];
      if (top?.kind === 'object' && top.expectKey) {
        const key = JSON.parse(text.slice(i, end + 1)) as string;
        const compared = options.ignoreCase === true ? key.toLowerCase() : key;
        const firstLine = top.keys.get(compared);
        if (firstLine !== undefined) return { key, within: top.path, firstLine, line };
        top.keys.set(compared, line);
        top.key = key;
        top.expectKey = false;
      }
      // Valid JSON has no raw line breaks inside strings (they must be escaped), so the line count stays right.
      i = end;
    }
  }
  return undefined;
}

/**
 * Refuses `text` (valid JSON) when one of its objects holds a key twice, naming `source` ("config file a.json"), the
 * key, the object and both lines: an operator's file that says two things must not silently mean the last.
 */
export function refuseDuplicateKeys(text: string, source: string, options: DuplicateKeyOptions = {}): void {
  const duplicate = firstDuplicateKey(text, options);
  if (duplicate === undefined) return;
  const within = duplicate.within === '' ? '' : ` in ${duplicate.within}`;
  const caseNote = options.ignoreCase === true ? '; names match whatever their case' : '';
  throw invalidArgument(
    `${source}, line ${duplicate.line}: duplicate key ${JSON.stringify(duplicate.key)}${within} (first on line ${duplicate.firstLine}${caseNote}): only the last would take effect; remove one of them`,
  );
}

/** The index of the '"' closing the string that opens at `start`; a backslash escapes the character after it. */
function stringEnd(text: string, start: number): number {
  for (let i = start + 1; i < text.length; i++) {
    if (text[i] === '\\') i++;
    else if (text[i] === '"') return i;
  }
  return text.length - 1;
}

/** The path of a container opening as the next value of `parent`. */
function childPath(parent: ObjectFrame | ArrayFrame | undefined): string {
  if (parent === undefined) return '';
  if (parent.kind === 'array') return `${parent.path}[${parent.index}]`;
  const key = parent.key ?? '';
  const name = /^[A-Za-z_][A-Za-z0-9_]*$/.test(key) ? key : JSON.stringify(key);
  return parent.path === '' ? name : `${parent.path}.${name}`;
}
