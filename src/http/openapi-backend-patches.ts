import { OpenAPIValidator, type AjvCustomizer, type OpenAPIBackend } from 'openapi-backend';

/**
 * Where the server replaces parts of openapi-backend (5.21) after `init()`, each kept only while
 * `node --import tsx bench/openapi-backend-patches.ts` measures that it pays (docs/design.md §10
 * keeps the numbers). Each is applied to the router that `createApi` (api.ts) builds. The
 * figures below are CPU medians of three runs on the 2-core development machine, 2026-12-06,
 * load average 15–20, each run's variants alternating.
 */

/**
 * openapi-backend compiles validators for every response and response header of the contract
 * too, which the server never uses: half of the work of every start (and of each worker's).
 * Requests alone are validated, with validators compiled now, not on the first request.
 * The router must be built with `validate: false`; this turns validation on.
 *
 * Measured: building and initialising the router took 159–205 ms of CPU with this and
 * 460–576 ms without (2.81–2.90 ×), in every worker's start; per request it changes nothing
 * (0.88–1.03 ×).
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
 *
 * Measured: `handleRequest` on the hot paths' requests (sign-in, logout, ending a session,
 * introspection, the feed), with handlers that do nothing, cost 25–37 µs of CPU with this and
 * 78–111 µs without (3.04–3.14 ×), of the 330–450 µs a logout costs in all (BENCHMARKS.md).
 */
export function keepOperationList(api: OpenAPIBackend): void {
  const operations = api.router.getOperations();
  api.router.getOperations = () => operations;
}
