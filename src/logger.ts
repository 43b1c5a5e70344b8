import { pino, type Logger } from 'pino';

export type { Logger };

const REDACTION = { paths: ['*.authorization', '*.headers.authorization', '*.signature', '*.token'], censor: '[redacted]' };

/**
 * Structured JSON logs. Nothing that is logged carries a token, a signature or key material;
 * the redaction is a second line of defence for headers that might be logged by mistake.
 * Standard output is written asynchronously, so a slow reader of the logs never stalls the
 * event loop; lines written while a write is in flight go out together with the next one,
 * and pino flushes what is left when the process exits.
 */
export function createLogger(
  level: string,
  destination: pino.DestinationStream = pino.destination({ dest: 1, sync: false }),
): Logger {
  return pino(
    {
      level,
      base: { service: 'fib-auth' },
      redact: REDACTION,
    },
    destination,
  );
}

/**
 * The logger of the one line per request: its fields are fixed (request id, method, path,
 * operation, status, time) and none can hold a header or a token, so it skips the redaction,
 * which cost more than formatting and writing the rest of the line.
 */
export function requestLineLogger(logger: Logger): Logger {
  return logger.child({}, { redact: { ...REDACTION, paths: [] } });
}
