import { createHash } from 'node:crypto';
import { stat } from 'node:fs/promises';
import { isAbsolute, parse, relative, resolve } from 'node:path';
import * as cache from '@actions/cache';
import * as core from '@actions/core';
import { describeError } from '../core/errors.js';
import type { FetchInfo, Fetcher } from '../core/fetcher.js';
import { parseR2Uri } from '../core/layout.js';

/**
 * Bumped when what an archive holds changes meaning (the pulled layout, or the `.r2d1` record the
 * fetcher trusts to skip a download): archives saved by an older r2d1 are then never restored.
 * Cache entries are immutable, so a key whose archive no longer satisfies the fetcher would
 * otherwise be restored (and kept alive) on every run while the pull downloads everything anyway.
 */
const KEY_SCHEMA = 'r2d1-cache-1';

/**
 * The Actions cache key of a pull: `r2d1-<readable source>-<32 hex>`, the hex being a SHA-256 of the
 * remote fingerprint (`Fetcher.resolve`). The readable part is only for people reading the cache list.
 */
export function cacheKey(source: string, fingerprint: string): string {
  const readable = source
    .replace(/^r2:\/\//, '')
    .replace(/\/+$/, '')
    .replace(/[^A-Za-z0-9._-]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 120);
  const hash = createHash('sha256').update(`${KEY_SCHEMA}\n${fingerprint}`).digest('hex').slice(0, 32);
  return `r2d1-${readable}-${hash}`;
}

/**
 * `pull` with the Actions cache in front of R2: restores the files a pull of `source` writes from an
 * archive keyed by the remote content, lets the fetcher verify them (nothing downloaded when they are
 * complete), and saves them after a pull that downloaded. The cache is an optimisation only: when it
 * is unavailable (not on GitHub, self-hosted without the service) or fails, the pull goes on from R2
 * with a warning. Errors of the pull itself (R2, D1, verification) propagate as without the cache.
 */
export async function pullWithCache(fetcher: Fetcher, source: string, dest: string, force: boolean): Promise<FetchInfo> {
  // Files restored from the cache did not come from R2: re-hash them against the manifest.
  const pull = (verify = false) => fetcher.pull(source, { dest, force, verify });
  if (!cache.isFeatureAvailable()) {
    core.info(
      'cache: the Actions cache service is not available on this runner (ACTIONS_RESULTS_URL / ACTIONS_CACHE_URL not set); pulling from R2 without it',
    );
    return pull();
  }
  const remote = await fetcher.resolve(source, dest);
  if (!remote.found) return pull(); // a fresh start: nothing to cache
  const key = cacheKey(source, remote.fingerprint);
  const paths = remote.paths;

  const unsafe = notCacheable(source, dest, paths);
  if (unsafe) {
    core.warning(`cache: not using the Actions cache for ${source}: ${unsafe}`);
    return pull();
  }

  const mode = cacheMode();
  const noRestore = force
    ? 'force is set'
    : !readable(mode)
      ? `the cache mode "${mode}" does not allow reads`
      : await existingCheckpoint(source, paths);
  let restored = false;
  if (noRestore) {
    core.info(`cache: not restoring ${key}: ${noRestore}`);
  } else {
    // A miss and a failure both come back undefined (@actions/cache warns about failures itself).
    const hit = await guarded(`restoring ${key}`, () => cache.restoreCache(paths.slice(), key));
    restored = hit === key;
    if (hit !== undefined && !restored) core.info(`cache: ignoring ${hit}: it is not ${key}`);
  }

  const info = await pull(restored);

  if (restored) {
    if (info.cached) core.info(`cache: ${source} restored from the Actions cache (${key}); nothing downloaded from R2`);
    else core.warning(`cache: ${key} was restored but did not hold all of ${source}; ${info.downloaded} bytes were downloaded from R2`);
    return info;
  }
  if (info.cached) return info; // already on disk, nothing new: the cache stays as it is
  if (!writable(mode)) {
    core.info(`cache: not saving ${key}: the cache mode "${mode}" does not allow writes`);
    return info;
  }

  // Save only what `key` names: `latest` (or a prefix) may have moved while we pulled.
  const after = await guarded(`checking ${source} before saving`, () => fetcher.resolve(source, dest));
  if (!after) return info;
  if (!after.found || after.fingerprint !== remote.fingerprint) {
    core.info(`cache: not saving ${key}: ${source} changed while it was pulled`);
    return info;
  }
  if (noRestore) {
    // The cache was not consulted: look (without downloading) before offering a duplicate.
    const existing = await guarded(`looking up ${key}`, () => cache.restoreCache(paths.slice(), key, [], { lookupOnly: true }));
    if (existing === key) {
      core.info(`cache: ${key} is already in the Actions cache; not saving it again`);
      return info;
    }
  }
  const id = await guarded(`saving ${key}`, () => cache.saveCache(paths.slice(), key));
  if (id !== undefined) {
    if (id === -1) core.warning(`cache: ${key} was not saved to the Actions cache (see above); the next pull of ${source} downloads from R2 again`);
    else core.info(`cache: saved ${source} to the Actions cache as ${key}`);
  }
  return info;
}

/** Runs a cache operation; a failure is a warning, never the pull's failure. */
async function guarded<T>(what: string, op: () => Promise<T>): Promise<T | undefined> {
  try {
    return await op();
  } catch (err) {
    core.warning(`cache: ${what} failed, going on without the Actions cache: ${describeError(err)}`);
    return undefined;
  }
}

/**
 * Why the paths must not go through @actions/cache, if so. It treats paths as glob patterns, and
 * archives (and restores over) everything under a directory: a prefix pulled into a directory that
 * holds the workspace would archive the checkout and later restore stale copies of it.
 */
function notCacheable(source: string, dest: string, paths: string[]): string | undefined {
  const globChars = process.platform === 'win32' ? /[*?[\]]/ : /[*?[\]\\]/; // "\\" escapes on POSIX; a separator on Windows
  const glob = paths.find((p) => globChars.test(p));
  if (glob) return `the path ${JSON.stringify(glob)} holds glob characters (* ? [ ] \\), which the Actions cache would expand`;
  if (parseR2Uri(source).kind !== 'prefix') return undefined;
  const root = resolve(dest);
  for (const [what, dir] of [
    ['the workspace', process.env.GITHUB_WORKSPACE || process.cwd()],
    ['the runner temp directory', process.env.RUNNER_TEMP],
  ] as const) {
    if (dir && contains(root, resolve(dir))) {
      return `${root} holds ${what} (${dir}), which would be archived with it; pull the prefix into a directory of its own`;
    }
  }
  if (root === parse(root).root) return `${root} is the file-system root`;
  return undefined;
}

const contains = (parent: string, child: string): boolean => {
  const rel = relative(parent, child);
  return rel === '' || (!rel.startsWith('..') && !isAbsolute(rel));
};

/**
 * A checkpoint folder already on disk is left to the fetcher (it knows whether it is current, and
 * replaces it whole): extracting an archive over it would leave files of the older version beside
 * the restored ones.
 */
async function existingCheckpoint(source: string, paths: string[]): Promise<string | undefined> {
  if (parseR2Uri(source).kind === 'prefix' || !paths[0]) return undefined;
  const found = await stat(paths[0]).then(
    () => true,
    () => false,
  );
  return found ? `${paths[0]} is already on disk` : undefined;
}

/** The runner's ACTIONS_CACHE_MODE as @actions/cache reads it: none, read, write or write-only; unset or unknown allows both. */
function cacheMode(): string {
  return (process.env.ACTIONS_CACHE_MODE || '').trim().toLowerCase();
}
const KNOWN_MODES = ['none', 'read', 'write', 'write-only'];
const readable = (mode: string) => !KNOWN_MODES.includes(mode) || mode === 'read' || mode === 'write';
const writable = (mode: string) => !KNOWN_MODES.includes(mode) || mode === 'write' || mode === 'write-only';
