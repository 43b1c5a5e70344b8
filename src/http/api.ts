import type { IncomingMessage } from 'node:http';
import type { ParameterizedContext } from 'koa';
import { OpenAPIBackend, type AjvCustomizer, type Context } from 'openapi-backend';
import { parseBearer } from '../domain/bearer.js';
import type { Clients } from '../domain/clients.js';
import { isEmail } from '../domain/email.js';
import { AuthFailure } from '../domain/failures.js';
import { bundledSpecPath } from '../package-root.js';
import { HttpFailure } from './refusals.js';
import { operationHandlers, securityFailure, type Services } from './handlers.js';
import { keepOperationList, validateRequestsOnly } from './openapi-backend-patches.js';

const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'];

/** The methods the contract defines at a path, for `Allow` and CORS preflights. */
export function allowedMethods(api: OpenAPIBackend, path: string): string[] {
  return METHODS.filter((method) => api.matchOperation({ method, path, headers: {} })).map((m) => m.toUpperCase());
}

/** Node joins repeated headers in `headers`; only `headersDistinct` shows that there were two. */
const authorizationValues = (req: IncomingMessage) => req.headersDistinct.authorization;

/** A form field sent once, or undefined. */
const formField = (form: unknown, name: string) => {
  const value = form !== null && typeof form === 'object' ? (form as Record<string, unknown>)[name] : undefined;
  return typeof value === 'string' ? value : undefined;
};

/**
 * A resource server's client credentials, checked against the registered clients; resolves
 * with the client's id. HTTP Basic (RFC 7617; id and secret form-encoded first, as RFC 6749
 * §2.3.1 has it), or, on an operation with a form body and without an Authorization header,
 * the form's `client_id` and `client_secret` (`client_secret_post`, RFC 6749 §2.3.1).
 */
async function authenticateClient(clients: Clients, values: readonly string[] | undefined, form: unknown): Promise<string> {
  if (values === undefined && formField(form, 'client_id') !== undefined) {
    const [id, secret] = [formField(form, 'client_id')!, formField(form, 'client_secret')];
    if (secret === undefined) throw new AuthFailure('clientCredentialsInvalid');
    await clients.authenticate(id, secret);
    return id;
  }
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

/**
 * The contract's router: it dispatches each request to the handler of its operationId, and
 * sends every refusal (unknown path, wrong method, failed security, failed validation) to the
 * one error layer by throwing.
 */
export async function createApi(services: Services): Promise<OpenAPIBackend> {
  // Validators are built once initialised, for requests only (openapi-backend-patches.ts).
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
      throw securityFailure(c)!;
    },
    validationFail: (c: Context) => {
      // Client credentials are checked before the request, as for every other operation.
      const failed = securityFailure(c);
      if (failed) throw failed;
      throw new HttpFailure('requestInvalid', validationMessage(c));
    },
  });
  const parseAuthorization = (_c: Context, ctx: ParameterizedContext) => parseBearer(authorizationValues(ctx.req));
  api.registerSecurityHandler('clientCredentials', (_c: Context, ctx: ParameterizedContext) =>
    authenticateClient(services.clients, authorizationValues(ctx.req), (ctx.state as { body?: unknown }).body),
  );
  api.registerSecurityHandler('accessToken', parseAuthorization);
  api.registerSecurityHandler('refreshToken', parseAuthorization);
  await api.init();
  validateRequestsOnly(api, contractFormats);
  keepOperationList(api);
  return api;
}
