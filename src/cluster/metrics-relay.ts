import { AggregatorRegistry, type Registry } from 'prom-client';

/**
 * The metrics are the server's, not each worker's (docs/design.md §8, §13): the primary serves
 * them, and for each scrape asks every worker for its registry (prom-client's cluster
 * aggregation: one IPC message to each worker and its answer) and sums them.
 */

/** A worker's half: from now on it answers the primary's requests for `registry`. */
export function shareMetrics(registry: Registry): void {
  AggregatorRegistry.setRegistries(registry);
  new AggregatorRegistry(); // its constructor answers the primary's requests in a worker
}

/** The primary's half: the whole server's metrics text, every worker's summed and then the primary's `own`. */
export function clusterMetricsText(own: Registry): () => Promise<string> {
  const workers = new AggregatorRegistry();
  return async () => {
    const [summed, ownText] = await Promise.all([workers.clusterMetrics(), own.metrics()]);
    return summed + ownText;
  };
}
