import { pino, type Logger } from 'pino';

export type { Logger };

/**
 * Structured JSON logs. Nothing that is logged carries a token, a signature or key material;
 * the redaction is a second line of defence for headers that might be logged by mistake.
 */
export function createLogger(level: string, destination: pino.DestinationStream = pino.destination(1)): Logger {
  return pino(
    {
      level,
      base: { service: 'fib-auth' },
      redact: { paths: ['*.authorization', '*.headers.authorization', '*.signature', '*.token'], censor: '[redacted]' },
    },
    destination,
  );
}
