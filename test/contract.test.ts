import assert from 'node:assert/strict';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { startContractServer, summarize, verifyContract, type ContractServer } from '../contract-tests/dredd.js';
import { BASE, resolvedContract } from './support/harness.js';

/**
 * A fixture in front of the real server: it forwards every request, but turns the body of a
 * successful logout into one the contract forbids. `status.code` becomes a string; Dredd's own
 * check compares only the example's shape, so only the schema the hooks give it catches this.
 */
async function startWrongLogoutBody(upstream: string): Promise<{ url: string; server: Server }> {
  const server = createServer((req, res) => {
    const forwarded = request(new URL(req.url!, upstream), { method: req.method, headers: req.rawHeaders }, (answer) => {
      const chunks: Buffer[] = [];
      answer.on('data', (chunk: Buffer) => chunks.push(chunk));
      answer.on('end', () => {
        let body = Buffer.concat(chunks);
        if (req.method === 'POST' && req.url === `${BASE}/logout` && answer.statusCode === 200) {
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
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}

describe('Dredd against the real server', () => {
  let server: ContractServer;
  before(async () => {
    server = await startContractServer();
  });
  after(() => server.stop());

  test('every named example of every documented response happens and matches the contract', { timeout: 120_000 }, async () => {
    const report = await verifyContract(server.t, server.fault, { reporter: 'dot' });
    console.log(summarize(report));
    const failed = report.transactions.filter((transaction) => transaction.result !== 'pass');
    assert.deepEqual(failed, []);

    // One transaction per named example of each response: the contract decides the count.
    const contract = await resolvedContract();
    const expected = new Map<number, number>();
    for (const pathItem of Object.values<any>(contract.paths)) {
      for (const operation of Object.values<any>(pathItem)) {
        for (const [status, response] of Object.entries<any>(operation.responses)) {
          const examples = Object.keys(response.content['application/json'].examples).length;
          expected.set(Number(status), (expected.get(Number(status)) ?? 0) + examples);
        }
      }
    }
    const ran = new Map<number, number>();
    for (const { status } of report.transactions) ran.set(status, (ran.get(status) ?? 0) + 1);
    assert.deepEqual(ran, expected);
    assert.equal(report.stats.passes, report.transactions.length);
    assert.equal(report.stats.skipped, 0);
  });

  test('fails when the logout answers a body the contract forbids', { timeout: 120_000 }, async () => {
    const fixture = await startWrongLogoutBody(server.t.url);
    console.log('Dredd against a fixture whose logout answers a wrong body: one failure is expected.');
    try {
      const report = await verifyContract(server.t, server.fault, { endpoint: fixture.url, reporter: 'dot' });
      const failed = report.transactions.filter((transaction) => transaction.result !== 'pass');
      assert.deepEqual(
        failed.map(({ name }) => name),
        ['LoggedOut > /auth/api/v1/authentication-management/logout > Log a user out > 200 > application/json'],
      );
      assert.match(failed[0].message, /status\/code.*integer/);
      assert.equal(report.stats.failures, 1);
    } finally {
      await new Promise((resolve) => fixture.server.close(resolve));
    }
  });
});
