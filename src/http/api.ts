import type { IncomingMessage } from 'node:http';
import type { ParameterizedContext } from 'koa';
import {
  OpenAPIBackend,
  OpenAPIValidator,
  type AjvCustomizer,
  type Context,
  type Operation,
  type ParsedRequest,
  type Request,
} from 'openapi-backend';
import { parseBearer } from '../domain/bearer.js';
import type { Clients } from '../domain/clients.js';
import { isEmail } from '../domain/email.js';
import { AuthFailure } from '../domain/failures.js';
import { bundledSpecPath } from '../package-root.js';
import { HttpFailure } from './failures.js';
import { operationHandlers, type Services } from './handlers.js';

const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'];

/** The methods the contract defines at a path, for `Allow` and CORS preflights. */
export function allowedMethods(api: OpenAPIBackend, path: string): string[] {
  return METHODS.filter((method) => api.matchOperation({ method, path, headers: {} })).map((m) => m.toUpperCase());
}

/** Node joins repeated headers in `headers`; only `headersDistinct` shows that there were two. */
const authorizationValues = (req: IncomingMessage) => req.headersDistinct.authorization;

/**
 * A resource server's HTTP Basic credentials (RFC 7617; id and secret form-encoded first, as
 * RFC 6749 §2.3.1 has it), checked against the registered clients; resolves with the client's id.
 */
async function authenticateClient(clients: Clients, values: readonly string[] | undefined): Promise<string> {
  const [scheme, credentials, ...rest] = values?.length === 1 ? values[0].split(' ').filter(Boolean) : [];
  if (scheme?.toLowerCase() !== 'basic' || credentials === undefined || rest.length > 0) {
    throw new AuthFailure('clientCredentialsMissing');
  }
  const pair = Buffer.from(credentials, 'base64').toString('utf8');
  const colon = pair.indexOf(':');
  const decoded = (part: string) => {
    try {
      return decodeURIComponent(part.replaceAll('+', ' '));
    } catch {
      return undefined;
    }
  };
  const id = colon < 0 ? undefined : decoded(pair.slice(0, colon));
  const secret = colon < 0 ? undefined : decoded(pair.slice(colon + 1));
  if (id === undefined || secret === undefined) throw new AuthFailure('clientCredentialsInvalid');
  await clients.authenticate(id, secret);
  return id;
}

/**
 * The string formats of the contract that ajv does not know by itself: without this, ajv
 * ignores `format: email`. The email rule is the service's own, the CLI's too (docs/design.md §9).
 */
export const contractFormats: AjvCustomizer = (ajv) => ajv.addFormat('email', { type: 'string', validate: isEmail });

/** The first validation error as a sentence: `/requestBody/email` becomes "The request body field 'email'". */
function validationMessage(c: Context): string {
  const [error] = c.validation.errors ?? [];
  if (!error) return 'The request is not valid.';
  const params = error.params as { missingProperty?: string; additionalProperty?: string; allowedValues?: string[] };
  if (params.missingProperty === 'requestBody') return 'The request body is required.';
  const [, part, ...path] = error.instancePath.split('/');
  if (part === 'query' && params.missingProperty) return `The query parameter '${params.missingProperty}' is required.`;
  const field = path.join('.');
  const subject =
    part === 'query' ? `The query parameter '${field}'` : field ? `The request body field '${field}'` : 'The request body';
  if (error.keyword === 'additionalProperties') return `${subject} must not have the property '${params.additionalProperty}'.`;
  if (error.keyword === 'enum') return `${subject} ${error.message}: ${params.allowedValues?.join(', ')}.`;
  return `${subject} ${error.message ?? 'is not valid'}.`;
}

type Parts = Record<string, unknown>;
type Parsed = ParsedRequest<unknown, Parts, Parts, Parts, Parts>;

/**
 * openapi-backend's `handleRequest` parses a request three times: before routing, after it,
 * and again to validate it; each parse compiles the operation's path template and decodes the
 * body anew. Here a request is parsed once for the operation it addresses, and each caller
 * gets its own copy of the parts that validation coerces in place (parameters, headers,
 * cookies). A request that addresses no operation is parsed as before, for the 404 or 405.
 */
function parseEachRequestOnce(api: OpenAPIBackend): void {
  const { router } = api;
  const parseAsTheLibraryDoes = router.parseRequest.bind(router);
  const parse = (req: Request, operation?: Operation) => parseAsTheLibraryDoes(req, operation) as Parsed;
  const parsed = new WeakMap<Request, { operation: Operation; request: Parsed }>();
  router.parseRequest = (req: Request, operation = router.matchOperation(req)) => {
    if (!operation) return parse(req);
    let earlier = parsed.get(req);
    if (earlier?.operation !== operation) parsed.set(req, (earlier = { operation, request: parse(req, operation) }));
    const { request } = earlier;
    return {
      ...request,
      params: { ...request.params },
      query: { ...request.query },
      headers: { ...request.headers },
      cookies: { ...request.cookies },
    };
  };
}

/**
 * The contract's router: it dispatches each request to the handler of its operationId, and
 * sends every refusal (unknown path, wrong method, failed security, failed validation) to the
 * one error layer by throwing.
 */
export async function createApi(services: Services): Promise<OpenAPIBackend> {
  // Validators are built below, for requests only.
  const api = new OpenAPIBackend({ definition: bundledSpecPath, strict: true, validate: false });
  api.register({
    ...operationHandlers(services),
    notFound: () => {
      throw new HttpFailure('noOperation');
    },
    methodNotAllowed: (c: Context) => {
      const allowed = allowedMethods(api, c.request.path);
      throw new HttpFailure('methodNotAllowed', c.request.method.toUpperCase(), { Allow: allowed.join(', ') });
    },
    unauthorizedHandler: (c: Context) => {
      // Each operation has one security scheme; its handler threw the reason.
      const [result] = Object.values<unknown>(c.security).filter(
        (value) => typeof value === 'object' && value !== null && 'error' in value && value.error,
      );
      throw (result as { error: unknown }).error;
    },
    validationFail: (c: Context) => {
      throw new HttpFailure('requestInvalid', validationMessage(c));
    },
  });
  const parseAuthorization = (_c: Context, ctx: ParameterizedContext) => parseBearer(authorizationValues(ctx.req));
  api.registerSecurityHandler('clientCredentials', (_c: Context, ctx: ParameterizedContext) =>
    authenticateClient(services.clients, authorizationValues(ctx.req)),
  );
  api.registerSecurityHandler('accessToken', parseAuthorization);
  api.registerSecurityHandler('refreshToken', parseAuthorization);
  await api.init();
  // openapi-backend would compile validators for every response and response header of the
  // contract too, which the server never uses: half of the work of every start (and of each
  // worker's). It validates requests only, with validators compiled now, not on first use.
  api.validator = new OpenAPIValidator({
    definition: api.definition,
    router: api.router,
    customizeAjv: contractFormats,
    lazyCompileValidators: true,
  });
  api.validator.preCompileRequestValidators();
  api.validate = true;
  // openapi-backend rebuilds its list of operations (lodash chains, object copies) on every
  // match, several times per request; the contract does not change while the server runs.
  const operations = api.router.getOperations();
  api.router.getOperations = () => operations;
  parseEachRequestOnce(api);
  return api;
}
