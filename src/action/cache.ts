import type { FetchInfo, Fetcher } from '../core/fetcher.js';

/** Placeholder until the cache integration lands: pulls without the Actions cache. */
export async function pullWithCache(fetcher: Fetcher, source: string, dest: string, force: boolean): Promise<FetchInfo> {
  return fetcher.pull(source, { dest, force });
}
