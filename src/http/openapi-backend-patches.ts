import {
  OpenAPIValidator,
  type AjvCustomizer,
  type OpenAPIBackend,
  type Operation,
  type ParsedRequest,
  type Request,
} from 'openapi-backend';

/**
 * Where the server replaces parts of openapi-backend (5.x) after `init()`, each kept only while
 * bench/openapi-backend-patches.ts measures that it pays (docs/design.md §10, where the numbers
 * are). Each is applied to the router that `createApi` (api.ts) builds, and to nothing else.
 */

/**
 * openapi-backend compiles validators for every response and response header of the contract
 * too, which the server never uses: half of the work of every start (and of each worker's).
 * Requests alone are validated, with validators compiled now, not on the first request.
 * The router must be built with `validate: false`; this turns validation on.
 *
 * Measured: start-up (construct + init) median 2026-12-06: see docs/design.md §10.
 */
export function validateRequestsOnly(api: OpenAPIBackend, customizeAjv: AjvCustomizer): void {
  api.validator = new OpenAPIValidator({
    definition: api.definition,
    router: api.router,
    customizeAjv,
    lazyCompileValidators: true,
  });
  api.validator.preCompileRequestValidators();
  api.validate = true;
}

/**
 * openapi-backend rebuilds its list of operations (lodash chains, object copies) on every
 * match, several times per request; the contract does not change while the server runs.
 */
export function keepOperationList(api: OpenAPIBackend): void {
  const operations = api.router.getOperations();
  api.router.getOperations = () => operations;
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
export function parseEachRequestOnce(api: OpenAPIBackend): void {
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
