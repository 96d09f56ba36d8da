import { oid, sequence, setOf, utf8String } from './der.js';
import { Oid } from './algorithms.js';

/** The attribute types meshid puts in the Names it writes. */
export type NameAttributeType = 'O' | 'OU' | 'CN';

/** X.520 ub-common-name (RFC 5280 Appendix A): the most characters a CN may have. */
export const MAX_COMMON_NAME = 64;

const TYPE_OID: Record<NameAttributeType, string> = { O: Oid.organization, OU: Oid.organizationalUnit, CN: Oid.commonName };

/**
 * A DER Name (RFC 5280 §4.1.2.4): one attribute per RDN, in the order given (most significant first, as X.500 and
 * the DER encoding list them), values as UTF8String, which RFC 5280 requires for new certificates.
 */
export function encodeName(attributes: readonly (readonly [NameAttributeType, string])[]): Buffer {
  return sequence(
    ...attributes.map(([type, value]) => {
      if (value === '') throw new RangeError(`empty ${type} in a Name`);
      return setOf(sequence(oid(TYPE_OID[type]), utf8String(value)));
    }),
  );
}
