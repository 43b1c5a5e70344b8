/**
 * The `status` of every JSON body, the contract's `Status` schema: the HTTP status, its reason
 * phrase, a sentence. Declared here so that fib-auth-resource-server ships it; the handlers'
 * types, generated from the contract, check that what `envelope` builds fits the schema.
 */
export interface Status {
  code: number;
  name: string;
  message: string;
}

/** The body of every JSON response (docs/design.md §2). */
export interface Envelope<Data = Record<string, never>> {
  status: Status;
  data: Data;
}

const REASON_PHRASES: Record<number, string> = {
  200: 'OK',
  400: 'Bad Request',
  401: 'Unauthorized',
  404: 'Not Found',
  405: 'Method Not Allowed',
  408: 'Request Timeout',
  413: 'Payload Too Large',
  415: 'Unsupported Media Type',
  422: 'Unprocessable Entity',
  429: 'Too Many Requests',
  431: 'Request Header Fields Too Large',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
};

export function envelope<Data extends object>(code: number, message: string, data: Data): Envelope<Data> {
  return { status: { code, name: REASON_PHRASES[code], message }, data };
}
