import { http, HttpResponse, type HttpHandler } from 'msw';
import { createOpenApiHttp, type OpenApiHttpHandlers } from 'openapi-msw';
import { contractExamples } from '../generated/examples.js';
import type { operations, paths } from '../generated/openapi.js';

/** Every operation of the contract. */
export type MockedOperation = keyof typeof contractExamples;
/** The names of an operation's documented answers, as the reference page and Prism's `Prefer: example=NAME` call them. */
export type ExampleName<Op extends MockedOperation> = keyof (typeof contractExamples)[Op]['examples'] & string;

type DeepReadonly<T> = T extends object ? { readonly [K in keyof T]: DeepReadonly<T[K]> } : T;
type Responses<Op extends MockedOperation> = operations[Op]['responses'];
/** One documented answer of an operation: a status, one of its media types, and a body of that response's schema. */
type Answer<Op extends MockedOperation> = {
  [S in keyof Responses<Op>]: Responses<Op>[S] extends { content: infer Content }
    ? {
        [C in keyof Content]: {
          readonly status: S;
          readonly contentType: C;
          readonly headers: Readonly<Record<string, string>>;
          readonly value: DeepReadonly<Content[C]>;
        };
      }[keyof Content]
    : never;
}[keyof Responses<Op>];

/** What a handler needs of an answer. */
interface Sent {
  readonly status: number;
  readonly contentType: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly value: unknown;
}

interface Operation<Names extends string, A extends Sent> {
  readonly method: 'get' | 'post' | 'put' | 'patch' | 'delete';
  readonly path: keyof paths;
  readonly examples: { readonly [Name in Names]: A };
}

/** The generated examples, checked against the contract's types: an example that breaks its schema fails to compile. */
const examples: { readonly [Op in MockedOperation]: Operation<ExampleName<Op>, Answer<Op>> } = contractExamples;

export interface MockOptions {
  /**
   * Where the client under test sends its requests, e.g. `http://localhost:8080`; by default
   * requests to any origin match.
   */
  baseUrl?: string;
}

function handlerFor(operation: MockedOperation, name: string, { baseUrl = '*' }: MockOptions): HttpHandler {
  const { method, path, examples: answers }: Operation<string, Sent> = examples[operation];
  const { status, contentType, headers, value } = answers[name];
  const body = typeof value === 'string' ? value : JSON.stringify(value);
  return http[method](
    // msw writes a path parameter as `:name`, OpenAPI as `{name}`.
    `${baseUrl}${path.replace(/\{(\w+)\}/g, ':$1')}`,
    () => new HttpResponse(body, { status, headers: { ...headers, 'Content-Type': contentType } }),
  );
}

/** A handler that answers `operation` with its documented example `name`, as the contract writes it. */
export function exampleHandler<Op extends MockedOperation>(
  operation: Op,
  name: ExampleName<Op>,
  options: MockOptions = {},
): HttpHandler {
  return handlerFor(operation, name, options);
}

/**
 * A handler for every operation of the contract, each answering its first 2xx example, or the
 * example `answers` names for it. Override one per test with `server.use(exampleHandler(…))`.
 * An operation whose success is a 204 has no example to answer with: mock it with `createAuthHttp`.
 */
export function authHandlers({
  answers = {},
  ...options
}: MockOptions & { answers?: { [Op in MockedOperation]?: ExampleName<Op> } } = {}): HttpHandler[] {
  return (Object.keys(examples) as MockedOperation[]).flatMap((operation) => {
    const documented: Operation<string, Sent>['examples'] = examples[operation].examples;
    const success = answers[operation] ?? Object.keys(documented).find((name) => documented[name].status < 300);
    return success === undefined ? [] : [handlerFor(operation, success, options)];
  });
}

/**
 * openapi-msw's `http`, typed by the contract, for answers no example gives: the path, the
 * status and the body must be the contract's.
 */
export function createAuthHttp({ baseUrl = '*' }: MockOptions = {}): OpenApiHttpHandlers<paths> {
  return createOpenApiHttp<paths>({ baseUrl });
}
