import { AuthFailure } from './failures.js';

const MAX_TOKEN_LENGTH = 4096;
const COMPACT_JWS = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+){2}$/;

/** A bearer token that parses (docs/design.md §3.1); nothing about it is trusted yet. */
export interface BearerToken {
  compact: string;
  header: Record<string, unknown>;
  payload: Record<string, unknown>;
  signature: string;
}

function jsonObject(segment: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(Buffer.from(segment, 'base64url').toString('utf8'));
    return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Reads the bearer token from every value of the Authorization header. A value that is one
 * bare token is read as `Bearer <token>`, since the FIB documentation calls the header value
 * "the accessToken value".
 */
export function parseBearer(values: readonly string[] | undefined): BearerToken {
  if (!values || values.length === 0) throw new AuthFailure('authorizationMissing');
  if (values.length > 1) throw new AuthFailure('authorizationRepeated');
  // Only SP separates scheme and token (RFC 9110 token68 syntax); a tab is part of a word.
  const words = values[0].split(' ').filter((word) => word !== '');
  if (words.length === 0) throw new AuthFailure('authorizationMissing');
  let token: string;
  if (words.length === 1 && words[0].includes('.')) {
    token = words[0];
  } else {
    if (words[0].toLowerCase() !== 'bearer') throw new AuthFailure('authorizationSchemeNotBearer');
    if (words.length !== 2) throw new AuthFailure('authorizationCredentialCount');
    token = words[1];
  }
  return parseToken(token);
}

/** Reads a compact JWS that arrived by itself (introspection's `token`); nothing about it is trusted yet. */
export function parseToken(token: string): BearerToken {
  if (token.length > MAX_TOKEN_LENGTH) throw new AuthFailure('tokenTooLong');
  const segments = token.split('.');
  // A segment of 4n+1 characters is no base64url encoding of any bytes. Node's decoder would
  // drop the last character where jose refuses the token, so both readings must agree here.
  if (!COMPACT_JWS.test(token) || segments.some((segment) => segment.length % 4 === 1))
    throw new AuthFailure('tokenNotCompactJws');
  const [headerSegment, payloadSegment, signature] = segments;
  const header = jsonObject(headerSegment);
  const payload = jsonObject(payloadSegment);
  if (!header || !payload) throw new AuthFailure('tokenPartsNotJson');
  return { compact: token, header, payload, signature };
}
