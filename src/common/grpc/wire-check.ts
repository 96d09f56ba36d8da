import { isUtf8 } from 'node:buffer';
import protobuf from 'protobufjs';
import { REPEATED_LIMITS } from './repeated-limits.js';
import { REQUEST_VALUE_LIMITS } from './value-limits.js';

/**
 * A strict walk over protobuf wire bytes against a message type, run before protobufjs decodes a request.
 *
 * protobufjs reads leniently where Google's C++ and Go parsers refuse: a string whose length runs past the end of the
 * message is cut short (BufferReader.string clamps), a string that is not UTF-8 becomes U+FFFD, a known field with
 * another wire type is read as if it had the declared one (a varint's value taken as a string's length), a tag is
 * read as 32 bits so field 2^29 + 2 arrives as field 2, and field number 0 is skipped as unknown. Each of these can
 * turn a SPIFFE ID or selector into something other than what the client sent, so they are refused here instead.
 *
 * What is accepted is what the protobuf encoding spec allows a proto3 parser to accept: unknown fields (of any valid
 * wire type, groups included) are skipped, repeated scalars arrive packed or not, non-minimal varints are read. A
 * known field with the wrong wire type is refused rather than kept as an unknown field (Go and C++ keep it): no
 * conforming encoder produces one, and dropping a field the handler relies on would hide the client's bug.
 */

/** How deep messages (and unknown groups) may nest; C++'s default recursion limit. */
export const MAX_NESTING = 100;

const MAX_FIELD_NUMBER = 2 ** 29 - 1;

const VARINT = 0;
const FIXED64 = 1;
const LENGTH_DELIMITED = 2;
const START_GROUP = 3;
const END_GROUP = 4;
const FIXED32 = 5;

const WIRE_TYPE_NAMES = ['varint', '64-bit', 'length-delimited', 'start-group', 'end-group', '32-bit'];

interface FieldRule {
  /** Dotted path segment for messages: the field's name. */
  readonly name: string;
  readonly wireType: number;
  /** A proto3 `string`: must be valid UTF-8 (protobuf encoding spec; Go and C++ refuse otherwise). */
  readonly utf8: boolean;
  /** Set for message fields (and map entries): the rules of the nested message. */
  message: MessageRules | undefined;
  /** For repeated scalars, which also arrive packed: the wire type of one element. */
  readonly packedElement: number | undefined;
  /** The most values one message may hold (repeated-limits.ts); packed values are not counted. */
  maxCount?: number;
}

interface MessageRules {
  /** The full name without the leading dot, as problems name the request. */
  readonly typeName: string;
  readonly fields: Map<number, FieldRule>;
  /** The most values a request of this type may hold in all (value-limits.ts); read only for the outermost type. */
  readonly maxValues: number;
}

const rulesByType = new WeakMap<protobuf.Type, MessageRules>();

/** The rules for `type`, compiled once per type; recursive types (Struct → Value → Struct) share one object. */
function rulesOf(type: protobuf.Type): MessageRules {
  let rules = rulesByType.get(type);
  if (rules !== undefined) return rules;
  const typeName = type.fullName.replace(/^\./, '');
  rules = { typeName, fields: new Map(), maxValues: REQUEST_VALUE_LIMITS.get(typeName) ?? Infinity };
  rulesByType.set(type, rules);
  for (const field of type.fieldsArray) {
    field.resolve();
    if (field instanceof protobuf.MapField) {
      const entry: MessageRules = {
        typeName: `${rules.typeName}.${field.name}`,
        maxValues: Infinity,
        fields: new Map([
          [1, scalarRule('key', field.keyType, false)],
          [2, valueRule('value', field)],
        ]),
      };
      rules.fields.set(field.id, limited(rules, { name: field.name, wireType: LENGTH_DELIMITED, utf8: false, message: entry, packedElement: undefined }));
    } else {
      rules.fields.set(field.id, limited(rules, valueRule(field.name, field)));
    }
  }
  return rules;
}

/** `rule` with its field's limit from REPEATED_LIMITS, if it has one. */
function limited(rules: MessageRules, rule: FieldRule): FieldRule {
  const maxCount = REPEATED_LIMITS.get(`${rules.typeName}.${rule.name}`);
  if (maxCount !== undefined) rule.maxCount = maxCount;
  return rule;
}

function valueRule(name: string, field: protobuf.Field): FieldRule {
  const resolved = field.resolvedType;
  if (resolved instanceof protobuf.Type) {
    return { name, wireType: LENGTH_DELIMITED, utf8: false, message: rulesOf(resolved), packedElement: undefined };
  }
  // Enums travel as varints.
  const type = resolved instanceof protobuf.Enum ? 'int32' : field.type;
  return scalarRule(name, type, field.repeated && !(field instanceof protobuf.MapField));
}

function scalarRule(name: string, type: string, repeated: boolean): FieldRule {
  const wireType = (protobuf.types.basic as Record<string, number | undefined>)[type];
  if (wireType === undefined) throw new Error(`protobuf field ${name} has unresolved type ${type}`);
  const packable = repeated && (protobuf.types.packed as Record<string, number | undefined>)[type] !== undefined;
  return { name, wireType, utf8: type === 'string', message: undefined, packedElement: packable ? wireType : undefined };
}

/**
 * The first way `bytes` is not a well-formed encoding of `type`, as a sentence naming the field and the problem
 * (e.g. `JWTSVIDRequest.spiffe_id (field 2) is not valid UTF-8`), or undefined when it is one. Never quotes the
 * bytes themselves: they may be a token.
 */
export function wireProblem(type: protobuf.Type, bytes: Uint8Array): string | undefined {
  const rules = rulesOf(type);
  // One walker for every call: walks are synchronous, and a request's check should allocate nothing when it passes.
  walker.start(bytes, rules.typeName, rules.maxValues);
  walker.message(rules, 0, bytes.length, 0);
  const problem = walker.problem;
  walker.start(EMPTY, '');
  return problem;
}

const EMPTY = new Uint8Array(0);

const NO_FIELDS: MessageRules = { typeName: 'group', fields: new Map(), maxValues: Infinity };

class Walk {
  problem: string | undefined;
  /** The value of the varint last read by varint(); a double, exact up to 2^53, enough for every comparison here. */
  private value = 0;

  /**
   * Where the walk is, as segments of the message that fails ("JWTSVIDRequest", ".node", ": group 15"): joined only
   * when a problem is found, so a well-formed request allocates no strings.
   */
  private readonly path: string[] = [];
  private buf: Uint8Array = EMPTY;
  /** Values left before the request holds more than its type's limit; counted down per field and packed element. */
  private valuesLeft = Infinity;
  private maxValues = Infinity;

  start(buf: Uint8Array, typeName: string, maxValues = Infinity): void {
    this.buf = buf;
    this.valuesLeft = this.maxValues = maxValues;
    this.problem = undefined;
    this.path.length = 0;
    this.path.push(typeName);
  }

  /**
   * Walks the fields in [pos, end) of one message, or of an unknown group when `group` is its field number (it then
   * ends at the matching end-group). Returns the position after the last field (after the end-group), or -1 once a
   * problem is recorded.
   */
  message(rules: MessageRules, pos: number, end: number, depth: number, group = 0): number {
    if (depth > MAX_NESTING) return this.fail(`${this.where()} is nested more than ${MAX_NESTING} deep`);
    // Values of the limited fields seen so far in this message; made only for a message that has one.
    let counts: Map<number, number> | undefined;
    while (pos < end) {
      const tagAt = pos;
      pos = this.varint(pos, end);
      if (pos < 0) return this.fail(`${this.where()}: the tag at byte ${tagAt} is ${varintProblem(pos)}`);
      if (--this.valuesLeft < 0) return this.fail(this.tooManyValues());
      const tag = this.value;
      const wireType = tag % 8;
      const number = Math.floor(tag / 8);
      if (number === 0) return this.fail(`${this.where()}: field number 0 at byte ${tagAt} (field numbers start at 1)`);
      if (number > MAX_FIELD_NUMBER) return this.fail(`${this.where()}: field number ${number} at byte ${tagAt} is above the maximum, ${MAX_FIELD_NUMBER}`);
      if (wireType === END_GROUP) {
        if (group === number) return pos;
        return this.fail(`${this.where()}: end-group of field ${number} at byte ${tagAt} without a matching start-group`);
      }
      const rule = rules.fields.get(number);
      if (wireType > FIXED32) return this.fail(`${this.at(rule, number)}: invalid wire type ${wireType}`);
      if (rule !== undefined && wireType !== rule.wireType && !(wireType === LENGTH_DELIMITED && rule.packedElement !== undefined)) {
        return this.fail(`${this.at(rule, number)} has wire type ${wireTypeName(wireType)}, expected ${wireTypeName(rule.wireType)}`);
      }
      if (rule?.maxCount !== undefined) {
        counts ??= new Map();
        const count = (counts.get(number) ?? 0) + 1;
        if (count > rule.maxCount) return this.fail(`${this.at(rule, number)} holds more than ${rule.maxCount} values, the most one request may carry`);
        counts.set(number, count);
      }
      switch (wireType) {
        case VARINT:
          pos = this.varint(pos, end);
          if (pos < 0) return this.fail(`${this.at(rule, number)}: the value is ${varintProblem(pos)}`);
          break;
        case FIXED64:
        case FIXED32: {
          const size = wireType === FIXED64 ? 8 : 4;
          if (end - pos < size) return this.fail(`${this.at(rule, number)}: ${size}-byte value truncated (${end - pos} bytes left)`);
          pos += size;
          break;
        }
        case LENGTH_DELIMITED: {
          const lengthAt = pos;
          pos = this.varint(pos, end);
          if (pos < 0) return this.fail(`${this.at(rule, number)}: the length at byte ${lengthAt} is ${varintProblem(pos)}`);
          const length = this.value;
          if (length > end - pos) return this.fail(`${this.at(rule, number)}: length ${length} runs past the end of the message (${end - pos} bytes left)`);
          if (rule !== undefined && !this.contents(rule, number, pos, pos + length, depth)) return -1;
          pos += length;
          break;
        }
        case START_GROUP:
          // Only unknown fields get here (proto3 declares no groups): skipped, as any unknown field.
          this.path.push(`: group ${number}`);
          pos = this.message(NO_FIELDS, pos, end, depth + 1, number);
          if (pos < 0) return -1;
          this.path.pop();
          break;
      }
    }
    if (group !== 0) return this.fail(`${this.where()} has no end-group before the end of the message`);
    return pos;
  }

  /** The payload of a known length-delimited field: a nested message, a UTF-8 string or packed scalars. */
  private contents(rule: FieldRule, number: number, pos: number, end: number, depth: number): boolean {
    if (rule.message !== undefined) {
      this.path.push(`.${rule.name}`);
      if (this.message(rule.message, pos, end, depth + 1) < 0) return false;
      this.path.pop();
      return true;
    }
    if (rule.utf8) return validUtf8(this.buf, pos, end) || this.refuse(`${this.at(rule, number)} is not valid UTF-8`);
    switch (rule.packedElement) {
      case VARINT:
        while (pos < end) {
          if (--this.valuesLeft < 0) return this.refuse(this.tooManyValues());
          const elementAt = pos;
          pos = this.varint(pos, end);
          if (pos < 0) return this.refuse(`${this.at(rule, number)}: the packed element at byte ${elementAt} is ${varintProblem(pos)}`);
        }
        return true;
      case FIXED32:
      case FIXED64: {
        const size = rule.packedElement === FIXED64 ? 8 : 4;
        if ((end - pos) % size !== 0) return this.refuse(`${this.at(rule, number)}: packed length ${end - pos} is not a multiple of ${size}`);
        this.valuesLeft -= (end - pos) / size;
        return this.valuesLeft >= 0 || this.refuse(this.tooManyValues());
      }
      default:
        // bytes: any content.
        return true;
    }
  }

  /**
   * Reads a varint at `pos` (not past `end`) into `this.value`; returns the position after it, -1 when it is
   * truncated, -2 when it is longer than 10 bytes or its 10th byte overflows 64 bits.
   */
  private varint(pos: number, end: number): number {
    const buf = this.buf;
    let value = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      if (pos >= end) return -1;
      const byte = buf[pos++]!;
      if (i === 9 && byte > 1) return -2;
      value += (byte & 0x7f) * scale;
      if (byte < 0x80) {
        this.value = value;
        return pos;
      }
      scale *= 128;
    }
    return -2;
  }

  private where(): string {
    return this.path.join('');
  }

  /** A field of the message being walked, for a problem: "JWTSVIDRequest.spiffe_id (field 2)". */
  private at(rule: FieldRule | undefined, number: number): string {
    return rule === undefined ? `${this.where()}: unknown field ${number}` : `${this.where()}.${rule.name} (field ${number})`;
  }

  /** Records the first problem; returns -1 so callers can `return this.fail(...)`. */
  private fail(problem: string): -1 {
    this.problem ??= problem;
    return -1;
  }

  /** Names the request, not the field where the count ran out: the values may be spread over any of them. */
  private tooManyValues(): string {
    return `${this.path[0]} holds more than ${this.maxValues} values in all (fields at any depth, each list element counted), the most one request may carry`;
  }

  private refuse(problem: string): false {
    this.fail(problem);
    return false;
  }
}

/**
 * Whether buf[pos, end) is UTF-8. Strings in requests are nearly always ASCII (SPIFFE IDs, selectors, resource
 * names), checked here byte by byte; node:buffer's isUtf8 (simdutf) needs a view of the range, which costs more than
 * the loop for the short strings of a request, so it only sees strings with a non-ASCII byte.
 */
function validUtf8(buf: Uint8Array, pos: number, end: number): boolean {
  for (let i = pos; i < end; i++) {
    if (buf[i]! >= 0x80) return isUtf8(buf.subarray(i, end));
  }
  return true;
}

function varintProblem(code: number): string {
  return code === -1 ? 'a truncated varint' : 'a varint longer than 10 bytes';
}

const walker = new Walk();

function wireTypeName(wireType: number): string {
  return `${WIRE_TYPE_NAMES[wireType] ?? 'invalid'} (${wireType})`;
}
