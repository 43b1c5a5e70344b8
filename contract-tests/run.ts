/**
 * `npm run contract`: starts the real server on a temporary SQLite file, runs Dredd against it,
 * prints what ran, and exits 1 unless every transaction passed.
 */
import { startContractServer, summarize, verifyContract, type ContractReport } from './dredd.js';

const server = await startContractServer();
let report: ContractReport;
try {
  report = await verifyContract(server.t, server.store);
} finally {
  await server.t.stop();
}
console.log(summarize(report));
process.exit(report.transactions.every((transaction) => transaction.result === 'pass') ? 0 : 1);
