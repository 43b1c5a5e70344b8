import type { IncomingMessage } from 'node:http';
import type { ParameterizedContext } from 'koa';
import { OpenAPIBackend, type Context, type Request } from 'openapi-backend';
import type { Authentication } from '../domain/authentication.js';
import { parseBearer } from '../domain/bearer.js';
import { bundledSpecPath } from '../package-root.js';
import { RequestRefused } from './envelope.js';
import { operationHandlers } from './handlers.js';

const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'];

/** Node joins repeated headers in `headers`; only `headersDistinct` shows that there were two. */
const authorizationValues = (req: IncomingMessage) => req.headersDistinct.authorization;

/** `instancePath` `/requestBody/email` becomes "The request body field 'email'". */
function validationMessage(c: Context): string {
  const [error] = c.validation.errors ?? [];
  if (!error) return 'The request is not valid.';
  if ((error.params as { missingProperty?: string }).missingProperty === 'requestBody') return 'The request body is required.';
  const field = error.instancePath.split('/').slice(2).join('.');
  const subject = field ? `The request body field '${field}'` : 'The request body';
  if (error.keyword === 'additionalProperties') {
    return `${subject} must not have the property '${(error.params as { additionalProperty: string }).additionalProperty}'.`;
  }
  return `${subject} ${error.message ?? 'is not valid'}.`;
}

/**
 * The contract's router: it dispatches each request to the handler of its operationId, and
 * sends every refusal (unknown path, wrong method, failed security, failed validation) to the
 * one error layer by throwing.
 */
export async function createApi(auth: Authentication): Promise<OpenAPIBackend> {
  const api = new OpenAPIBackend({ definition: bundledSpecPath, strict: true, validate: true });
  api.register({
    ...operationHandlers(auth),
    notFound: () => {
      throw new RequestRefused(404, 'No operation exists at this path.');
    },
    methodNotAllowed: (c: Context) => {
      const request = c.request as Request;
      const allowed = METHODS.filter((method) => api.matchOperation({ ...request, method })).map((m) => m.toUpperCase());
      throw new RequestRefused(405, `This path does not accept the ${request.method.toUpperCase()} method.`, { Allow: allowed.join(', ') });
    },
    unauthorizedHandler: (c: Context) => {
      // Each operation has one security scheme; its handler threw the reason.
      const [result] = Object.values(c.security).filter((value) => typeof value === 'object' && value?.error);
      throw (result as { error: unknown }).error;
    },
    validationFail: (c: Context) => {
      throw new RequestRefused(400, validationMessage(c));
    },
  });
  const parseAuthorization = (_c: Context, ctx: ParameterizedContext) => parseBearer(authorizationValues(ctx.req));
  api.registerSecurityHandler('accessToken', parseAuthorization);
  api.registerSecurityHandler('refreshToken', parseAuthorization);
  await api.init();
  return api;
}
