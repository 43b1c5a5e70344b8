// Preloaded into the server's processes by `npm run bench:profile` (`--import`): subscribing to
// the request-phases channel before the server starts turns phase timing on
// (src/request-phases.ts). Each process keeps the timelines of the requests it served and, as
// it exits, writes them to PHASE_RECORD_DIR/phases-<pid>.json; a process that served none
// (a cluster's primary) writes nothing.
import { subscribe } from 'node:diagnostics_channel';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { REQUEST_PHASES_CHANNEL } from '../dist/src/request-phases.js';

const rows = [];
/** The requests of one batch share its facts' object: each batch gets an id here. */
const batchIds = new WeakMap();
let batches = 0;
const batchOf = (facts) => {
  if (!facts) return undefined;
  if (!batchIds.has(facts)) batchIds.set(facts, `${process.pid}:${batches++}`);
  return { ...facts, id: batchIds.get(facts) };
};
subscribe(REQUEST_PHASES_CHANNEL, (phases) =>
  rows.push({
    at: phases.startedAt,
    operation: phases.operation,
    status: phases.status,
    ms: phases.ms,
    batch: batchOf(phases.batch),
  }),
);
process.once('exit', () => {
  if (rows.length > 0) writeFileSync(join(process.env.PHASE_RECORD_DIR, `phases-${process.pid}.json`), JSON.stringify(rows));
});
