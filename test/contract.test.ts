import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  startContractServer,
  summarize,
  verifyContract,
  type ContractReport,
  type ContractServer,
} from '../contract-tests/dredd.js';
import { FAILURES } from '../src/contract/failures.js';
import { isEnvelope, resolvedContract } from './support/harness.js';
import { startWrongLogoutBody, type WrongLogoutBody } from './support/wrong-logout-body.js';

// One Dredd run: every transaction against the real server, and the two logout 200s once more
// through a fixture that breaks their body, which Dredd must report.
const BROKEN = ['LoggedOut', 'LoggedOutEverywhere'];

describe('Dredd against the real server', () => {
  let server: ContractServer;
  let fixture: WrongLogoutBody;
  let report: ContractReport;
  let direct: ContractReport['transactions'];
  before(async () => {
    server = await startContractServer();
    fixture = await startWrongLogoutBody(server.t.url);
    console.log(`Dredd also sends ${BROKEN.join(' and ')} through a fixture that breaks their body: those two must fail.`);
    report = await verifyContract(server.t, server.store, { examples: BROKEN, through: fixture.url });
    direct = report.transactions.filter((transaction) => transaction.through === undefined);
    console.log(summarize({ ...report, transactions: direct }));
  });
  after(async () => {
    await fixture?.stop();
    await server?.t.stop();
  });

  test('every named example of every documented response happens and matches the contract', async () => {
    const failed = direct.filter((transaction) => transaction.result !== 'pass');
    assert.deepEqual(failed, []);

    // One transaction per named example of each response: the contract decides the count.
    const contract = await resolvedContract();
    const expected = new Map<number, number>();
    for (const pathItem of Object.values(contract.paths)) {
      for (const operation of Object.values(pathItem)) {
        for (const [status, response] of Object.entries(operation.responses)) {
          // A response without a body (204) is one transaction, with no example.
          const [media] = Object.values(response.content ?? {});
          const examples = media ? Object.keys(media.examples).length : 1;
          expected.set(Number(status), (expected.get(Number(status)) ?? 0) + examples);
        }
      }
    }
    const ran = new Map<number, number>();
    for (const { status } of direct) ran.set(status, (ran.get(status) ?? 0) + 1);
    assert.deepEqual(ran, expected);
    assert.equal(report.stats.passes, direct.length);
    assert.equal(report.stats.skipped, 0);

    // Every failure of the table was answered for real: its message is that of an example Dredd
    // just saw. Answers outside any operation are documented in info.description instead.
    const outsideOperations = new Set(['noOperation', 'headersTooLarge', 'requestTimeout', 'requestUnparsable']);
    const answered = new Set(
      direct.map(({ example: name }) => {
        const value = contract.components.examples[name]?.value; // none for a 204
        return isEnvelope(value) ? value.status.message : undefined;
      }),
    );
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

  test('fails when the logout answers a body the contract forbids', () => {
    const through = report.transactions.filter((transaction) => transaction.through === fixture.url);
    assert.deepEqual(
      through.map(({ name, result }) => ({ name, result })),
      BROKEN.map((example) => ({
        name: `${example} again through ${fixture.url} > /auth/api/v1/authentication-management/logout > Log a user out > 200 > application/json`,
        result: 'fail',
      })),
    );
    for (const { message } of through) assert.match(message, /status\/code.*integer/);
    assert.equal(report.stats.failures, 2);
  });
});
