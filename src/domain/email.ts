/**
 * What the service takes for an email address (docs/design.md §9): the contract's
 * `format: email` and `maxLength`, and `fib-auth users add --email`, apply this one rule.
 */

/** RFC 5321 §4.5.3.1.3: a path is at most 256 octets, two of them the angle brackets. */
export const EMAIL_MAX_LENGTH = 254;

/**
 * A "valid email address" as WHATWG HTML defines it for `<input type=email>` (ASCII: local
 * part, `@`, dot-separated host labels of at most 63 characters), the rule browsers apply.
 */
const EMAIL_ADDRESS =
  /^[a-zA-Z0-9.!#$%&'*+/=?^_`{|}~-]+@[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$/;

export function isEmail(text: string): boolean {
  return text.length <= EMAIL_MAX_LENGTH && EMAIL_ADDRESS.test(text);
}
