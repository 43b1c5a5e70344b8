import { createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { BASE } from './api.js';

export interface WrongLogoutBody {
  url: string;
  /** While false, every answer passes unchanged. */
  breaking: boolean;
  stop(): Promise<void>;
}

/**
 * A fixture in front of the real server: it forwards every request, but turns the body of a
 * successful logout into one the contract forbids (while `breaking`). `status.code` becomes a
 * string, so the body keeps the example's shape: only a check against the schema notices.
 */
export async function startWrongLogoutBody(upstream: string): Promise<WrongLogoutBody> {
  const server = createServer((req, res) => {
    const forwarded = request(new URL(req.url!, upstream), { method: req.method, headers: req.rawHeaders }, (answer) => {
      const chunks: Buffer[] = [];
      answer.on('data', (chunk: Buffer) => chunks.push(chunk));
      answer.on('end', () => {
        let body = Buffer.concat(chunks);
        const logout = req.method === 'POST' && new URL(req.url!, upstream).pathname === `${BASE}/logout`;
        if (fixture.breaking && logout && answer.statusCode === 200) {
          const envelope = JSON.parse(body.toString('utf8')) as { status: object };
          body = Buffer.from(JSON.stringify({ ...envelope, status: { ...envelope.status, code: '200' } }));
        }
        res.writeHead(answer.statusCode!, { ...answer.headers, 'content-length': body.length });
        res.end(body);
      });
    });
    req.pipe(forwarded);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const fixture: WrongLogoutBody = {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    breaking: true,
    stop: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
  return fixture;
}
