import createClient from 'openapi-fetch';
import type { components, operations, paths } from '../generated/openapi.js';
import { memoryStorage, type StoredTokens, type TokenPair, type TokenStorage } from './storage.js';

export { indexedDbStorage, memoryStorage } from './storage.js';
export type { IndexedDbStorageOptions, StoredTokens, TokenPair, TokenStorage } from './storage.js';

export type SignInRequest = components['schemas']['SignInRequest'];
export type SignInChallenge = components['schemas']['SignInChallenge'];
export type LogoutScope = components['parameters']['LogoutScope'];
export type Status = components['schemas']['Status'];
export type EmptyData = components['schemas']['EmptyData'];

/** The operations the client calls. */
export type AuthOperation = 'createSignInChallenge' | 'authorizeUser' | 'refreshTokens' | 'logout' | 'endSession';
/** The error statuses the contract documents for an operation. */
export type ErrorCode<Op extends AuthOperation> = Exclude<keyof operations[Op]['responses'], 200>;

/**
 * The stable `code` of each kind of `AuthError`, as jose's errors carry one: match on it (or on
 * `kind`), not on the message, which may be reworded.
 */
export const AUTH_ERROR_CODES = {
  answered: 'ERR_FIB_AUTH_ANSWERED',
  unreachable: 'ERR_FIB_AUTH_UNREACHABLE',
  signedOut: 'ERR_FIB_AUTH_SIGNED_OUT',
} as const;
type CodeOf<Kind extends keyof typeof AUTH_ERROR_CODES> = (typeof AUTH_ERROR_CODES)[Kind];

/**
 * Why a call did not succeed, as a value: `status` is the envelope's, or made up alike when
 * the service did not answer with one.
 * - `answered` (`ERR_FIB_AUTH_ANSWERED`): the service refused with one of the answers its
 *   contract documents.
 * - `unreachable` (`ERR_FIB_AUTH_UNREACHABLE`): no answer of the contract came: the network
 *   failed (`status.code` 0, `cause` says why) or something else answered, such as a proxy's 502.
 * - `signedOut` (`ERR_FIB_AUTH_SIGNED_OUT`): no token pair is stored (never signed in, logged
 *   out, or the session was refused), so nothing was sent: sign in.
 */
export type AuthError<Op extends AuthOperation = AuthOperation> = Op extends AuthOperation
  ? | {
        kind: 'answered';
        code: CodeOf<'answered'>;
        operation: Op;
        status: Status & { code: ErrorCode<Op> };
        requestId: string | null;
      }
    | {
        kind: 'unreachable';
        code: CodeOf<'unreachable'>;
        operation: Op;
        status: Status;
        requestId: string | null;
        cause?: unknown;
      }
    | { kind: 'signedOut'; code: CodeOf<'signedOut'>; operation: Op; status: Status & { code: 0 } }
  : never;

/** The outcome of a call: its `data`, or its `error`. Nothing is thrown. */
export type AuthResult<T, Op extends AuthOperation> = { data: T; error?: undefined } | { data?: undefined; error: AuthError<Op> };

/** What `client.fetch` rejects with when it has no access token to send; `error` says why. */
export class AuthClientError extends Error {
  static readonly code = 'ERR_FIB_AUTH_NO_ACCESS_TOKEN';
  readonly code = AuthClientError.code;

  constructor(readonly error: AuthError<'refreshTokens'>) {
    super(error.status.message);
    this.name = 'AuthClientError';
  }
}

export interface AuthClientOptions {
  /** Where the service is, e.g. `https://auth.example.com` (its paths start with `/auth/api/v1`). */
  baseUrl: string;
  /** The `fetch` to send with; the global one at the time of each call by default. */
  fetch?: typeof fetch;
  /** Where the pair is kept: memory by default; see `indexedDbStorage` to share it between tabs. */
  storage?: TokenStorage;
  /**
   * Seconds before the access token expires from which `accessToken()` refreshes first (30 by
   * default; at most half the token's lifetime).
   */
  refreshMargin?: number;
  /**
   * The origins besides `baseUrl`'s to which `fetch` sends the access token, each exactly an
   * origin: `['https://reports.example.com']`. None by default.
   */
  tokenOrigins?: readonly string[];
}

export interface AuthClient {
  /**
   * A single-use challenge for `email`, to sign in without a replayable body: sign its
   * `message` as the FIB guide signs the email, then `signIn({ email, signature,
   * authPublicKeyHex, nonce })` before `expiresAt`. Required where the service runs with
   * `SIGN_IN_CHALLENGE=required`.
   */
  challenge(email: string): Promise<AuthResult<SignInChallenge, 'createSignInChallenge'>>;
  /** Signs in and keeps the new pair. */
  signIn(body: SignInRequest): Promise<AuthResult<TokenPair, 'authorizeUser'>>;
  /** Replaces the pair now. Concurrent calls, and refreshes of other clients on the same storage, share one request. */
  refresh(): Promise<AuthResult<TokenPair, 'refreshTokens'>>;
  /** Ends the session (`local`, the default) or every session of the user (`global`), and forgets the pair. */
  logout(options?: { scope?: LogoutScope }): Promise<AuthResult<EmptyData, 'logout' | 'refreshTokens'>>;
  /**
   * Ends this session with the refresh token (`DELETE /session`) and forgets the pair: the way
   * out once the access token has expired, without refreshing first.
   */
  endSession(): Promise<AuthResult<EmptyData, 'endSession'>>;
  /** A valid access token: the stored one, or a new one when it expires within the margin. */
  accessToken(): Promise<AuthResult<string, 'refreshTokens'>>;
  /**
   * `fetch` for the caller's own requests to other FIB services. A request to the origin of
   * `baseUrl` or of `tokenOrigins` goes with `Authorization: Bearer <accessToken>`, and after
   * a 401 whose challenge is `Bearer error="invalid_token"` the pair is refreshed and the
   * request sent once more; it rejects with an `AuthClientError` when there is no access
   * token to send. A request to any other origin goes out as it is, without the token.
   */
  fetch(input: RequestInfo | URL, init?: RequestInit): Promise<Response>;
}

const SESSION = '/auth/api/v1/authentication-management/session';
const CHALLENGE = '/auth/api/v1/authentication-management/session/challenge';
const LOGOUT = '/auth/api/v1/authentication-management/logout';

/**
 * The error statuses each operation documents. The type holds it to the contract in both
 * directions: a status missing here or not in the contract fails to compile.
 */
const DOCUMENTED_ERRORS: { [Op in AuthOperation]: Record<ErrorCode<Op>, true> } = {
  createSignInChallenge: { 400: true, 413: true, 415: true, 429: true, 500: true },
  authorizeUser: { 400: true, 404: true, 413: true, 415: true, 422: true, 429: true, 500: true },
  refreshTokens: { 401: true, 404: true, 422: true, 429: true, 500: true },
  logout: { 400: true, 401: true, 404: true, 422: true, 429: true, 500: true },
  endSession: { 401: true, 404: true, 422: true, 429: true, 500: true },
};

/** RFC 6750 §3.1: the token sent was refused (expired, revoked), so a new one may be accepted. */
const INVALID_TOKEN = /\bBearer\b.*\berror="?invalid_token\b/i;

/** The answers after which the pair is of no more use: the token was refused, or the session or user is gone. */
const REFUSED = new Set([401, 404, 422]);
const isRefused = (error: AuthError) => error.kind === 'answered' && REFUSED.has(error.status.code);

const bearer = (token: string) => ({ Authorization: `Bearer ${token}` });
const pairOf = ({ accessToken, refreshToken, expirationTime }: StoredTokens): TokenPair => ({
  accessToken,
  refreshToken,
  expirationTime,
});

function isStatus(value: unknown): value is Status {
  const status = value as Partial<Status> | null;
  return typeof status?.code === 'number' && typeof status.name === 'string' && typeof status.message === 'string';
}

function signedOut<Op extends AuthOperation>(operation: Op): { error: AuthError<Op> } {
  const status = { code: 0, name: 'Signed Out', message: 'No token pair is stored: sign in first.' } as const;
  return { error: { kind: 'signedOut', code: AUTH_ERROR_CODES.signedOut, operation, status } as AuthError<Op> };
}

/** One call of an operation, its outcome made a value: the envelope's `data`, or an `AuthError`. */
async function settle<Op extends AuthOperation, T>(
  operation: Op,
  call: () => Promise<{ data?: { data: T }; error?: unknown; response: Response }>,
): Promise<AuthResult<T, Op>> {
  let outcome: Awaited<ReturnType<typeof call>>;
  try {
    outcome = await call();
  } catch (cause) {
    const status = { code: 0, name: 'Network Error', message: `The service did not answer: ${String(cause)}` };
    const code = AUTH_ERROR_CODES.unreachable;
    return { error: { kind: 'unreachable', code, operation, status, requestId: null, cause } as AuthError<Op> };
  }
  const { data, error, response } = outcome;
  if (response.ok && data !== undefined) return { data: data.data };
  const requestId = response.headers.get('X-Request-Id');
  const status = (error as { status?: unknown } | undefined)?.status;
  if (isStatus(status) && status.code === response.status && status.code in DOCUMENTED_ERRORS[operation])
    return { error: { kind: 'answered', code: AUTH_ERROR_CODES.answered, operation, status, requestId } as AuthError<Op> };
  const unexpected = {
    code: response.status,
    name: response.statusText,
    message: `The service answered HTTP ${response.status} outside its contract.`,
  };
  const code = AUTH_ERROR_CODES.unreachable;
  return { error: { kind: 'unreachable', code, operation, status: unexpected, requestId } as AuthError<Op> };
}

export function createAuthClient({
  baseUrl,
  fetch: send = (input, init) => globalThis.fetch(input, init),
  storage = memoryStorage(),
  refreshMargin = 30,
  tokenOrigins = [],
}: AuthClientOptions): AuthClient {
  for (const origin of tokenOrigins)
    if (new URL(origin).origin !== origin) throw new TypeError(`tokenOrigins: ${origin} is not an origin (https://host[:port])`);
  // A relative baseUrl is the page's own origin, as openapi-fetch's requests resolve it.
  const page = (globalThis as { location?: { href: string } }).location?.href;
  const tokenGoesTo = new Set([new URL(baseUrl, page).origin, ...tokenOrigins]);
  const api = createClient<paths>({ baseUrl, fetch: (request) => send(request) });
  const store = async (pair: TokenPair): Promise<StoredTokens> => {
    const tokens = { ...pair, receivedAt: Date.now() };
    await storage.save(tokens);
    return tokens;
  };
  const isDue = ({ receivedAt, expirationTime }: StoredTokens) =>
    Date.now() >= receivedAt + (expirationTime - Math.min(refreshMargin, expirationTime / 2)) * 1000;

  let refreshing: Promise<AuthResult<StoredTokens, 'refreshTokens'>> | undefined;

  /**
   * Replaces `seen`, the pair a caller found due or refused, unless another caller or another
   * client of the storage already did: then their pair is the answer. Concurrent calls share one.
   */
  function refreshOnce(seen: StoredTokens): Promise<AuthResult<StoredTokens, 'refreshTokens'>> {
    refreshing ??= storage
      .exclusive(async (): Promise<AuthResult<StoredTokens, 'refreshTokens'>> => {
        const current = await storage.load();
        if (!current) return signedOut('refreshTokens');
        if (current.refreshToken !== seen.refreshToken && !isDue(current)) return { data: current };
        const result = await settle('refreshTokens', () => api.PATCH(SESSION, { headers: bearer(current.refreshToken) }));
        if (!result.error) return { data: await store(result.data) };
        if (isRefused(result.error)) await storage.save(undefined);
        return result;
      })
      .finally(() => {
        refreshing = undefined;
      });
    return refreshing;
  }

  /** The stored pair, refreshed first when its access token is due. */
  async function freshTokens(): Promise<AuthResult<StoredTokens, 'refreshTokens'>> {
    const tokens = await storage.load();
    if (!tokens) return signedOut('refreshTokens');
    return isDue(tokens) ? refreshOnce(tokens) : { data: tokens };
  }

  const withToken = (request: Request, accessToken: string) => {
    request.headers.set('Authorization', `Bearer ${accessToken}`);
    return send(request);
  };

  return {
    challenge: (email) => settle('createSignInChallenge', () => api.POST(CHALLENGE, { body: { email } })),

    async signIn(body) {
      const result = await settle('authorizeUser', () => api.POST(SESSION, { body }));
      if (!result.error) await store(result.data);
      return result;
    },

    async refresh() {
      const tokens = await storage.load();
      if (!tokens) return signedOut('refreshTokens');
      const result = await refreshOnce(tokens);
      return result.error ? result : { data: pairOf(result.data) };
    },

    async accessToken() {
      const result = await freshTokens();
      return result.error ? result : { data: result.data.accessToken };
    },

    async logout({ scope } = {}) {
      // An expired access token cannot log out: refresh first.
      const tokens = await freshTokens();
      if (tokens.error) return tokens;
      const query = scope === undefined ? {} : { params: { query: { scope } } };
      const logoutWith = ({ accessToken }: StoredTokens) =>
        settle('logout', () => api.POST(LOGOUT, { ...query, headers: bearer(accessToken) }));
      let result = await logoutWith(tokens.data);
      if (result.error?.kind === 'answered' && result.error.status.code === 401) {
        // Another tab may have replaced the pair, or this clock ran late: log out with the next pair.
        const next = await refreshOnce(tokens.data);
        if (!next.error) result = await logoutWith(next.data);
      }
      if (!result.error || isRefused(result.error)) await storage.save(undefined);
      return result;
    },

    endSession: () =>
      // In turn with refreshes, which would otherwise present the same refresh token (reuse).
      storage.exclusive(async (): Promise<AuthResult<EmptyData, 'endSession'>> => {
        const current = await storage.load();
        if (!current) return signedOut('endSession');
        const result = await settle('endSession', () => api.DELETE(SESSION, { headers: bearer(current.refreshToken) }));
        if (!result.error || isRefused(result.error)) await storage.save(undefined);
        return result;
      }),

    async fetch(input, init) {
      const request = new Request(input, init);
      if (!tokenGoesTo.has(new URL(request.url).origin)) return send(request);
      const again = request.clone(); // a body can be read once
      const tokens = await freshTokens();
      if (tokens.error) throw new AuthClientError(tokens.error);
      const response = await withToken(request, tokens.data.accessToken);
      if (response.status !== 401 || !INVALID_TOKEN.test(response.headers.get('WWW-Authenticate') ?? '')) return response;
      const next = await refreshOnce(tokens.data);
      if (next.error) return response;
      await response.body?.cancel();
      return withToken(again, next.data.accessToken);
    },
  };
}
