import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startContractServer, summarize, verifyContract, type ContractServer } from '../contract-tests/dredd.js';
import { FAILURES } from '../src/http/failures.js';
import { example, resolvedContract } from './support/harness.js';
import { startWrongLogoutBody } from './support/wrong-logout-body.js';

describe('Dredd against the real server', () => {
  let server: ContractServer;
  before(async () => {
    server = await startContractServer();
  });
  after(() => server.t.stop());

  test('every named example of every documented response happens and matches the contract', { timeout: 120_000 }, async () => {
    const report = await verifyContract(server.t, server.store);
    console.log(summarize(report));
    const failed = report.transactions.filter((transaction) => transaction.result !== 'pass');
    assert.deepEqual(failed, []);

    // One transaction per named example of each response: the contract decides the count.
    const contract = await resolvedContract();
    const expected = new Map<number, number>();
    for (const pathItem of Object.values<any>(contract.paths)) {
      for (const operation of Object.values<any>(pathItem)) {
        for (const [status, response] of Object.entries<any>(operation.responses)) {
          const [media] = Object.values<any>(response.content);
          const examples = Object.keys(media.examples).length;
          expected.set(Number(status), (expected.get(Number(status)) ?? 0) + examples);
        }
      }
    }
    const ran = new Map<number, number>();
    for (const { status } of report.transactions) ran.set(status, (ran.get(status) ?? 0) + 1);
    assert.deepEqual(ran, expected);
    assert.equal(report.stats.passes, report.transactions.length);
    assert.equal(report.stats.skipped, 0);

    // Every failure of the table was answered for real: its message is that of an example Dredd
    // just saw. Answers outside any operation are documented in info.description instead.
    const outsideOperations = new Set(['noOperation', 'headersTooLarge', 'requestTimeout', 'requestUnparsable']);
    const answered = new Set(report.transactions.map(({ example: name }) => example(name).status?.message));
    assert.deepEqual(
      Object.entries(FAILURES)
        .filter(
          ([reason, { message }]) => typeof message === 'string' && !outsideOperations.has(reason) && !answered.has(message),
        )
        .map(([reason]) => reason),
      [],
      'failures that no example of the contract shows',
    );
  });

  test('fails when the logout answers a body the contract forbids', { timeout: 120_000 }, async () => {
    const fixture = await startWrongLogoutBody(server.t.url);
    console.log('Dredd against a fixture whose logout answers a wrong body: the two logout 200s must fail.');
    try {
      const report = await verifyContract(server.t, server.store, { endpoint: fixture.url });
      const failed = report.transactions.filter((transaction) => transaction.result !== 'pass');
      assert.deepEqual(
        failed.map(({ name }) => name),
        ['LoggedOut', 'LoggedOutEverywhere'].map(
          (example) => `${example} > /auth/api/v1/authentication-management/logout > Log a user out > 200 > application/json`,
        ),
      );
      for (const { message } of failed) assert.match(message, /status\/code.*integer/);
      assert.equal(report.stats.failures, 2);
    } finally {
      await fixture.stop();
    }
  });
});
