import { createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { BASE } from './api.js';

/**
 * A fixture in front of the real server: it forwards every request, but turns the body of a
 * successful logout into one the contract forbids. `status.code` becomes a string, so the body
 * keeps the example's shape: only a check against the schema notices.
 */
export async function startWrongLogoutBody(upstream: string): Promise<{ url: string; stop(): Promise<void> }> {
  const server = createServer((req, res) => {
    const forwarded = request(new URL(req.url!, upstream), { method: req.method, headers: req.rawHeaders }, (answer) => {
      const chunks: Buffer[] = [];
      answer.on('data', (chunk: Buffer) => chunks.push(chunk));
      answer.on('end', () => {
        let body = Buffer.concat(chunks);
        if (req.method === 'POST' && new URL(req.url!, upstream).pathname === `${BASE}/logout` && answer.statusCode === 200) {
          const envelope = JSON.parse(body.toString('utf8'));
          body = Buffer.from(JSON.stringify({ ...envelope, status: { ...envelope.status, code: '200' } }));
        }
        res.writeHead(answer.statusCode!, { ...answer.headers, 'content-length': body.length });
        res.end(body);
      });
    });
    req.pipe(forwarded);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    stop: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
