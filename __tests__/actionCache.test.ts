/**
 * The action's `cache` input (src/action/cache.ts): pulls through the GitHub Actions cache, with the
 * cache service faked at its HTTP boundary (./helpers/actionsCacheFake.ts, nock) and R2/D1 the real
 * miniflare rig. @actions/cache runs unmodified: twirp client, Azure Blob SDK, system tar + zstd.
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, jest } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { gunzipSync } from 'node:zlib';
import nock from 'nock';
import type { CheckpointSpec, Hooks } from './helpers/checkpoints.js';

/*
 * nock intercepts by patching http.request/https.request (and fetch) while it is active; it activates
 * itself on import. Under jest's ESM mode a built-in imported from an ES module (`import * as http
 * from 'http'` in @actions/http-client, 'node:https' in the Azure SDK's runtime, ...) is a snapshot
 * of the built-in's exports taken the first time this test file's module graph imports it. A static
 * import of anything reaching 'node:http' (src/core/s3Store.ts, the AWS SDK) is linked before nock's
 * code runs, and @actions/cache would then keep the unpatched functions and never be intercepted.
 * So: only nock and type-only imports are static; everything else is imported here, while nock's
 * import-time patch is in place (the patched functions keep working across restore → activate).
 * Then nock is switched off for the rest of the file, except inside the describe block below, where
 * only the fake's hosts are intercepted and 127.0.0.1 (the miniflare rig: R2 over S3, D1) passes through.
 */
if (!nock.isActive()) nock.activate();
const { cacheKey, pullWithCache } = await import('../src/action/cache.js');
const { run } = await import('../src/action/mainImpl.js');
const { Fetcher, silentLogger } = await import('../src/index.js');
const { internalCacheTwirpClient } = await import('../node_modules/@actions/cache/lib/internal/shared/cacheTwirpClient.js');
const { ActionsCacheFake } = await import('./helpers/actionsCacheFake.js');
const { closeS3, deadUrl, hashDir, hookedCore, putObject, randomFile, sha256, shipWithCore } = await import('./helpers/checkpoints.js');
const { makeTempDir, rigEnv, uniqueJobId } = await import('./rig/rig.js');
nock.restore();
afterAll(() => {
  nock.cleanAll();
  nock.enableNetConnect();
  nock.restore();
  closeS3();
});

const MiB = 1024 * 1024;

/** Every variable @actions/cache (or @actions/core) reads that a test sets or must not inherit. */
const CACHE_ENV = [
  'ACTIONS_CACHE_SERVICE_V2',
  'ACTIONS_RESULTS_URL',
  'ACTIONS_RUNTIME_TOKEN',
  'ACTIONS_CACHE_URL',
  'ACTIONS_CACHE_MODE',
  'GITHUB_SERVER_URL',
  'GITHUB_WORKSPACE',
  'GITHUB_OUTPUT',
  'RUNNER_TEMP',
  'RUNNER_DEBUG',
  'SEGMENT_DOWNLOAD_TIMEOUT_MINS',
  'CACHE_UPLOAD_CONCURRENCY',
  'CACHE_UPLOAD_CHUNK_SIZE',
];

/** Sets (or, for undefined, removes) process.env variables; returns the undo. */
function setEnv(vars: Record<string, string | undefined>): () => void {
  const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  const apply = (values: Record<string, string | undefined>) => {
    for (const [k, v] of Object.entries(values)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  };
  apply(vars);
  return () => apply(saved);
}

async function withEnv<T>(vars: Record<string, string | undefined>, fn: () => Promise<T>): Promise<T> {
  const undo = setEnv(vars);
  try {
    return await fn();
  } finally {
    undo();
  }
}

describe('pullWithCache against a faked Actions cache service (nock)', () => {
  const fake = new ActionsCacheFake();
  const cleanups: (() => unknown)[] = [];
  let undoEnv: () => void;
  let workspace: string;
  let out: string[];
  let stdout: { mockRestore(): void };

  beforeAll(async () => {
    if (!nock.isActive()) nock.activate();
    nock.disableNetConnect();
    nock.enableNetConnect(/127\.0\.0\.1|localhost/);
    workspace = await makeTempDir('r2d1-workspace-');
    const runnerTemp = await makeTempDir('r2d1-runner-temp-');
    undoEnv = setEnv({
      ...Object.fromEntries(CACHE_ENV.map((k) => [k, undefined])),
      ...fake.env(),
      GITHUB_WORKSPACE: workspace,
      RUNNER_TEMP: runnerTemp,
    });
    cleanups.push(() => rm(workspace, { recursive: true, force: true }));
    cleanups.push(() => rm(runnerTemp, { recursive: true, force: true }));
    fake.start();
  });
  afterAll(async () => {
    fake.stop();
    nock.cleanAll();
    nock.enableNetConnect();
    nock.restore();
    undoEnv();
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  const testCleanups: (() => unknown)[] = [];
  beforeEach(() => {
    fake.reset();
    out = [];
    // @actions/core logs (and annotates) through stdout: capture it, keep the test output quiet.
    stdout = jest.spyOn(process.stdout, 'write').mockImplementation(((chunk: string | Uint8Array) => {
      out.push(String(chunk));
      return true;
    }) as typeof process.stdout.write);
  });
  afterEach(async () => {
    stdout.mockRestore();
    for (const cleanup of testCleanups.splice(0).reverse()) await cleanup();
  });

  const lines = () => out.join('').split(/\r?\n/);
  /** core.warning messages. */
  const warnings = () => lines().filter((l) => l.startsWith('::warning')).map((l) => l.replace(/^::warning[^:]*::/, ''));
  /** core.info lines (plain, no command). */
  const infos = () => lines().filter((l) => l !== '' && !l.startsWith('::'));

  async function tempDir(prefix = 'r2d1-cache-'): Promise<string> {
    const dir = await makeTempDir(prefix);
    testCleanups.push(() => rm(dir, { recursive: true, force: true }));
    return dir;
  }

  /** A Fetcher on the rig whose store records every get (HookedStore). */
  function countedFetcher(hooks: Hooks = {}) {
    const { backends, store } = hookedCore(hooks);
    const fetcher = new Fetcher(backends, { logger: silentLogger });
    testCleanups.push(() => fetcher.close());
    return {
      fetcher,
      store,
      /** GETs of checkpoint or dataset content (manifests are metadata, read to resolve). */
      dataGets: () => store.gets.filter((g) => !g.key.endsWith('.manifest.json')),
    };
  }

  async function ship(job: string, checkpoints: Record<string, CheckpointSpec>): Promise<string> {
    const dir = await tempDir('r2d1-train-');
    await shipWithCore(dir, job, checkpoints);
    return dir;
  }


  /** The entries of a saved archive (zstd or gzip tar), as tar lists them. */
  function archiveEntries(data: Buffer): string[] {
    const zstd = data.subarray(0, 4).equals(Buffer.from([0x28, 0xb5, 0x2f, 0xfd]));
    const tar = zstd ? execFileSync('zstd', ['-d', '-c'], { input: data, maxBuffer: 256 * MiB }) : gunzipSync(data);
    return execFileSync('tar', ['-tPf', '-'], { input: tar, maxBuffer: 16 * MiB })
      .toString('utf8')
      .split('\n')
      .filter(Boolean)
      .map((e) => e.replace(/\/$/, ''));
  }

  const rel = (path: string) => relative(workspace, path);

  /** Makes the twirp client's retry back-off (3 s, ×1.5, 5 attempts) immediate; returns the spy. */
  function immediateTwirpRetries() {
    const client = internalCacheTwirpClient() as unknown as { rpc: object };
    const proto = Object.getPrototypeOf(client.rpc) as { sleep(ms: number): Promise<void> };
    const spy = jest.spyOn(proto, 'sleep').mockImplementation(async () => undefined);
    testCleanups.push(() => spy.mockRestore());
    return spy;
  }

  it('wiring: @actions/cache reaches the fake through nock while the rig on 127.0.0.1 still answers', async () => {
    const res = await internalCacheTwirpClient().GetCacheEntryDownloadURL({ key: 'probe', restoreKeys: [], version: '0'.repeat(64) });
    expect(res).toMatchObject({ ok: false, matchedKey: '' });
    expect(fake.calls('GetCacheEntryDownloadURL')).toHaveLength(1);
    expect(await countedFetcher().fetcher.resolve(`r2://jobs/${uniqueJobId('probe')}/latest`, '/tmp/unused')).toEqual({
      found: false,
      fingerprint: '',
      paths: [],
    });
  });

  it('a checkpoint: the first pull downloads and saves it under its key; a pull on a clean disk restores it and GETs no data from R2', async () => {
    const job = uniqueJobId('cache');
    const files = { 'model.bin': randomFile(1.5 * MiB), 'nested/deep/opt.bin': randomFile(200_000), 'config.json': '{"lr":0.1}' };
    const trained = await ship(job, { slot_0: { epoch: 3, files } });
    const source = `r2://jobs/${job}/latest`;
    const dest = join(await tempDir(), 'checkpoints');

    const first = countedFetcher();
    const info1 = await pullWithCache(first.fetcher, source, dest, false);
    expect(info1).toMatchObject({ found: true, cached: false, name: 'slot_0', epoch: 3, files: 3, localDir: join(dest, 'slot_0') });
    expect(info1.downloaded).toBe(info1.bytes);
    expect(first.dataGets().length).toBeGreaterThanOrEqual(3);

    const { fingerprint, paths } = await first.fetcher.resolve(source, dest);
    const key = cacheKey(source, fingerprint);
    expect(key).toMatch(new RegExp(`^r2d1-jobs-${job}-latest-[0-9a-f]{32}$`));
    expect(paths).toEqual([join(dest, 'slot_0'), join(dest, 'slot_0.json'), join(dest, '.r2d1', 'slot_0.json')]);
    // miss, then reserve → upload → finalize
    expect(fake.twirpCalls.map((c) => [c.method, c.status])).toEqual([
      ['GetCacheEntryDownloadURL', 200],
      ['CreateCacheEntry', 200],
      ['FinalizeCacheEntryUpload', 200],
    ]);
    expect(fake.calls('GetCacheEntryDownloadURL')[0]!.body.key).toBe(key);
    const saved = fake.saved();
    expect(saved.map((e) => e.key)).toEqual([key]);
    expect(fake.blobCalls.map((c) => [c.method, c.status])).toEqual([['PUT', 201]]);
    const entries = archiveEntries(saved[0]!.data!);
    for (const p of ['slot_0/model.bin', 'slot_0/nested/deep/opt.bin', 'slot_0/config.json', 'slot_0.json', '.r2d1/slot_0.json']) {
      expect(entries).toContain(rel(join(dest, p)));
    }
    expect(infos()).toContain(`cache: saved ${source} to the Actions cache as ${key}`);
    expect(warnings()).toEqual([]);

    // A new runner: nothing on disk.
    await rm(dest, { recursive: true, force: true });
    fake.twirpCalls.length = 0;
    const second = countedFetcher();
    const info2 = await pullWithCache(second.fetcher, source, dest, false);
    expect(info2).toEqual({ ...info1, cached: true, downloaded: 0 });
    expect(second.dataGets()).toEqual([]);
    expect(fake.twirpCalls.map((c) => c.method)).toEqual(['GetCacheEntryDownloadURL']); // a hit: nothing saved again
    // The Azure SDK path @actions/cache takes on GitHub: getProperties (HEAD), then ranged GETs.
    const size = saved[0]!.data!.length;
    expect(fake.blobCalls.slice(1).map((c) => [c.method, c.status, c.range])).toEqual([
      ['HEAD', 200, undefined],
      ['GET', 206, `bytes=0-${size - 1}`],
    ]);
    expect(await hashDir(join(dest, 'slot_0'))).toEqual(await hashDir(join(trained, 'slot_0')));
    expect(await readFile(join(dest, 'slot_0.json'), 'utf8')).toBe(await readFile(join(trained, 'slot_0.json'), 'utf8'));
    expect(infos()).toContain(`cache: ${source} restored from the Actions cache (${key}); nothing downloaded from R2`);
    expect(warnings()).toEqual([]);
  });

  it('through the action (mode pull, cache true): the outputs say found=true and cached=true after a restore', async () => {
    const job = uniqueJobId('cache-action');
    const files = { 'weights.bin': randomFile(700_000), 'meta.json': '{"step":7}' };
    const trained = await ship(job, { best: { epoch: 7, files } });
    const dest = join(await tempDir(), 'ckpt');
    const outputFile = join(await tempDir(), 'github_output');

    const pullAction = async () => {
      await writeFile(outputFile, '');
      const exitCode = process.exitCode;
      await withEnv(
        {
          ...rigEnv(),
          GITHUB_OUTPUT: outputFile,
          INPUT_MODE: 'pull',
          INPUT_SOURCE: `r2://jobs/${job}/best`,
          INPUT_PATH: dest,
          INPUT_CACHE: 'true',
          INPUT_FORCE: 'false',
        },
        () => run(),
      );
      const failed = process.exitCode;
      process.exitCode = exitCode;
      expect(failed).not.toBe(1);
      return parseOutputs(await readFile(outputFile, 'utf8'));
    };

    expect(await pullAction()).toMatchObject({ found: 'true', cached: 'false', name: 'best', epoch: '7', 'local-dir': join(dest, 'best') });
    expect(fake.saved()).toHaveLength(1);
    await rm(dest, { recursive: true, force: true });
    expect(await pullAction()).toMatchObject({ found: 'true', cached: 'true', name: 'best', epoch: '7', 'local-dir': join(dest, 'best') });
    expect(fake.downloads().length).toBeGreaterThan(0);
    expect(await hashDir(join(dest, 'best'))).toEqual(await hashDir(join(trained, 'best')));
    expect(lines().some((l) => l.startsWith('::error'))).toBe(false);
  });

  it('a prefix (dataset): saved after the first pull, restored on a clean disk with no GET to R2', async () => {
    const prefix = `datasets/cache-${randomBytes(4).toString('hex')}`;
    const objects: Record<string, Buffer> = {
      'train/shard-0.bin': randomFile(400_000),
      'train/shard-1.bin': randomFile(250_000),
      'val/shard-0.bin': randomFile(64_000),
      'labels.csv': Buffer.from('id,label\n1,cat\n2,dog\n'),
    };
    for (const [path, body] of Object.entries(objects)) await putObject(`${prefix}/${path}`, body);
    const source = `r2://${prefix}`;
    const dest = join(await tempDir(), 'data');

    const first = countedFetcher();
    const info1 = await pullWithCache(first.fetcher, source, dest, false);
    expect(info1).toMatchObject({ found: true, cached: false, files: 4, localDir: dest });
    expect(first.dataGets()).toHaveLength(4);
    const { fingerprint, paths } = await first.fetcher.resolve(source, dest);
    const key = cacheKey(source, fingerprint);
    expect(key).toMatch(new RegExp(`^r2d1-${prefix.replace('/', '-')}-[0-9a-f]{32}$`));
    expect(paths).toEqual([dest]);
    expect(fake.saved().map((e) => e.key)).toEqual([key]);
    expect(archiveEntries(fake.saved()[0]!.data!)).toEqual(expect.arrayContaining(Object.keys(objects).map((p) => rel(join(dest, p)))));

    await rm(dest, { recursive: true, force: true });
    const second = countedFetcher();
    const info2 = await pullWithCache(second.fetcher, source, dest, false);
    expect(info2).toEqual({ ...info1, cached: true, downloaded: 0 });
    expect(second.store.gets).toEqual([]);
    const expected = Object.fromEntries(Object.entries(objects).map(([path, body]) => [path, { size: body.length, sha256: sha256(body) }]));
    expect(await hashDir(dest)).toEqual(expected);
    expect(fake.calls('CreateCacheEntry')).toHaveLength(1);
    expect(warnings()).toEqual([]);
  });

  it('a new checkpoint committed: a new key, downloaded (replacing the old folder whole) and saved; then restorable', async () => {
    const job = uniqueJobId('cache-new');
    const source = `r2://jobs/${job}/latest`;
    await ship(job, { slot_0: { epoch: 1, files: { 'model.bin': randomFile(300_000), 'old-only.bin': randomFile(1000) } } });
    const dest = join(await tempDir(), 'ckpt');
    await pullWithCache(countedFetcher().fetcher, source, dest, false);
    const [key1] = fake.saved().map((e) => e.key);

    const trained = await ship(job, { slot_0: { epoch: 2, files: { 'model.bin': randomFile(300_000), 'new-only.bin': randomFile(2000) } } });
    // dest still holds epoch 1: the fetcher replaces it (the cache is not extracted over it).
    const next = countedFetcher();
    const info = await pullWithCache(next.fetcher, source, dest, false);
    expect(info).toMatchObject({ found: true, cached: false, epoch: 2 });
    expect(next.dataGets().length).toBeGreaterThanOrEqual(2);
    const key2 = cacheKey(source, (await next.fetcher.resolve(source, dest)).fingerprint);
    expect(key2).not.toBe(key1);
    expect(fake.saved().map((e) => e.key)).toEqual([key1, key2]);
    expect(await hashDir(join(dest, 'slot_0'))).toEqual(await hashDir(join(trained, 'slot_0')));
    expect(infos()).toContain(`cache: not restoring ${key2}: ${join(dest, 'slot_0')} is already on disk`);

    await rm(dest, { recursive: true, force: true });
    const again = countedFetcher();
    expect(await pullWithCache(again.fetcher, source, dest, false)).toMatchObject({ epoch: 2, cached: true, downloaded: 0 });
    expect(again.dataGets()).toEqual([]);
    expect(await hashDir(join(dest, 'slot_0'))).toEqual(await hashDir(join(trained, 'slot_0')));
  });

  it('latest moving while it is pulled: the pulled files are not saved under the key of what was resolved first', async () => {
    const job = uniqueJobId('cache-race');
    const source = `r2://jobs/${job}/latest`;
    await ship(job, { slot_0: { epoch: 1, files: { 'model.bin': randomFile(200_000) } } });
    let shipped = false;
    const racing = countedFetcher({
      get: async (key, _range, next) => {
        if (!shipped && !key.endsWith('.manifest.json')) {
          shipped = true;
          await ship(job, { slot_1: { epoch: 2, files: { 'model.bin': randomFile(200_000) } } });
        }
        return next();
      },
    });
    const dest = join(await tempDir(), 'ckpt');
    const info = await pullWithCache(racing.fetcher, source, dest, false);
    expect(info).toMatchObject({ found: true, epoch: 1, name: 'slot_0', cached: false });
    expect(shipped).toBe(true);
    expect(fake.calls('CreateCacheEntry')).toEqual([]);
    expect(infos().some((l) => /^cache: not saving r2d1-.*: .* changed while it was pulled$/.test(l))).toBe(true);
  });

  it('force: no restore, a full download, and no duplicate save of a key the cache already holds', async () => {
    const job = uniqueJobId('cache-force');
    const source = `r2://jobs/${job}/latest`;
    await ship(job, { slot_0: { epoch: 5, files: { 'model.bin': randomFile(300_000) } } });
    const dest = join(await tempDir(), 'ckpt');
    await pullWithCache(countedFetcher().fetcher, source, dest, false);
    expect(fake.saved()).toHaveLength(1);
    await rm(dest, { recursive: true, force: true });
    const downloads = fake.downloads().length;

    const forced = countedFetcher();
    const info = await pullWithCache(forced.fetcher, source, dest, true);
    expect(info).toMatchObject({ found: true, cached: false, epoch: 5 });
    expect(forced.dataGets().length).toBeGreaterThan(0);
    expect(fake.downloads()).toHaveLength(downloads); // only a lookup, no archive download
    expect(fake.calls('CreateCacheEntry')).toHaveLength(1);
    expect(fake.calls('GetCacheEntryDownloadURL')).toHaveLength(2);
    expect(infos()).toContain(`cache: not restoring ${fake.saved()[0]!.key}: force is set`);
  });

  it('CreateCacheEntry failing (500, retried): the pull succeeds from R2 with a warning, nothing saved', async () => {
    const sleep = immediateTwirpRetries();
    const job = uniqueJobId('cache-500-save');
    await ship(job, { slot_0: { epoch: 1, files: { 'model.bin': randomFile(300_000) } } });
    fake.fail('CreateCacheEntry', 500);
    const counted = countedFetcher();
    const dest = join(await tempDir(), 'ckpt');
    const info = await pullWithCache(counted.fetcher, `r2://jobs/${job}/latest`, dest, false);
    expect(info).toMatchObject({ found: true, cached: false, epoch: 1 });
    expect(counted.dataGets().length).toBeGreaterThan(0);
    expect(fake.calls('CreateCacheEntry').map((c) => c.status)).toEqual([500, 500, 500, 500, 500]);
    expect(sleep).toHaveBeenCalledTimes(4);
    expect(fake.saved()).toEqual([]);
    expect(fake.blobCalls).toEqual([]);
    expect(warnings()).toEqual([expect.stringMatching(/^cache: r2d1-.* was not saved to the Actions cache \(see above\)/)]);
    expect(infos().some((l) => l.startsWith('Failed to save: Unable to reserve cache'))).toBe(true);
  });

  it('GetCacheEntryDownloadURL failing (500, retried): the pull downloads from R2 with a warning', async () => {
    const sleep = immediateTwirpRetries();
    const job = uniqueJobId('cache-500-restore');
    const source = `r2://jobs/${job}/latest`;
    const trained = await ship(job, { slot_0: { epoch: 1, files: { 'model.bin': randomFile(300_000) } } });
    const dest = join(await tempDir(), 'ckpt');
    await pullWithCache(countedFetcher().fetcher, source, dest, false);
    expect(fake.saved()).toHaveLength(1);
    await rm(dest, { recursive: true, force: true });

    fake.fail('GetCacheEntryDownloadURL', 500);
    out.length = 0;
    const counted = countedFetcher();
    const info = await pullWithCache(counted.fetcher, source, dest, false);
    expect(info).toMatchObject({ found: true, cached: false, epoch: 1 });
    expect(counted.dataGets().length).toBeGreaterThan(0);
    expect(sleep).toHaveBeenCalled();
    expect(await hashDir(join(dest, 'slot_0'))).toEqual(await hashDir(join(trained, 'slot_0')));
    expect(warnings()[0]).toMatch(/^Failed to restore: Failed to GetCacheEntryDownloadURL: .*500/);
    // The key exists already: the save is refused (409), which is a warning too, not a failure.
    expect(fake.calls('CreateCacheEntry').map((c) => c.status)).toEqual([200, 409]);
    expect(fake.saved()).toHaveLength(1);
  });

  it('a cache service that does not answer (connection refused): warnings, and the pull goes on', async () => {
    const job = uniqueJobId('cache-down');
    await ship(job, { slot_0: { epoch: 1, files: { 'model.bin': randomFile(100_000) } } });
    const counted = countedFetcher();
    const info = await withEnv({ ACTIONS_RESULTS_URL: await deadUrl('/') }, () =>
      pullWithCache(counted.fetcher, `r2://jobs/${job}/latest`, join(freshDest(), 'ckpt'), false),
    );
    expect(info).toMatchObject({ found: true, cached: false, epoch: 1 });
    expect(fake.twirpCalls).toEqual([]);
    const w = warnings();
    expect(w[0]).toMatch(/^Failed to restore: .*ECONNREFUSED/);
    expect(w.at(-1)).toMatch(/was not saved to the Actions cache/);
  });

  it('no ACTIONS_RUNTIME_TOKEN (the save throws instead of logging): a warning, and the pull goes on', async () => {
    const job = uniqueJobId('cache-token');
    await ship(job, { slot_0: { epoch: 1, files: { 'model.bin': randomFile(100_000) } } });
    const info = await withEnv({ ACTIONS_RUNTIME_TOKEN: undefined }, () =>
      pullWithCache(countedFetcher().fetcher, `r2://jobs/${job}/latest`, join(freshDest(), 'ckpt'), false),
    );
    expect(info).toMatchObject({ found: true, cached: false, epoch: 1 });
    expect(fake.twirpCalls).toEqual([]);
    expect(warnings()).toEqual(
      expect.arrayContaining([expect.stringMatching(/^cache: saving r2d1-.* failed, going on without the Actions cache: Unable to get the ACTIONS_RUNTIME_TOKEN/)]),
    );
  });

  it('not on GitHub (no ACTIONS_RESULTS_URL / ACTIONS_CACHE_URL): one info line, no cache calls, a plain pull', async () => {
    const job = uniqueJobId('cache-off');
    await ship(job, { slot_0: { epoch: 1, files: { 'model.bin': randomFile(100_000) } } });
    const counted = countedFetcher();
    const info = await withEnv({ ACTIONS_RESULTS_URL: undefined, ACTIONS_CACHE_URL: undefined }, () =>
      pullWithCache(counted.fetcher, `r2://jobs/${job}/latest`, join(freshDest(), 'ckpt'), false),
    );
    expect(info).toMatchObject({ found: true, cached: false, epoch: 1 });
    expect(counted.dataGets().length).toBeGreaterThan(0);
    expect(fake.twirpCalls).toEqual([]);
    expect(infos().filter((l) => l.startsWith('cache:'))).toEqual([
      'cache: the Actions cache service is not available on this runner (ACTIONS_RESULTS_URL / ACTIONS_CACHE_URL not set); pulling from R2 without it',
    ]);
    expect(warnings()).toEqual([]);
  });

  it('ACTIONS_CACHE_MODE=read (e.g. an untrusted trigger): restores, never saves', async () => {
    const job = uniqueJobId('cache-ro');
    const source = `r2://jobs/${job}/latest`;
    await ship(job, { slot_0: { epoch: 1, files: { 'model.bin': randomFile(100_000) } } });
    const dest = join(await tempDir(), 'ckpt');
    const info = await withEnv({ ACTIONS_CACHE_MODE: 'read' }, () => pullWithCache(countedFetcher().fetcher, source, dest, false));
    expect(info).toMatchObject({ found: true, cached: false });
    expect(fake.twirpCalls.map((c) => c.method)).toEqual(['GetCacheEntryDownloadURL']);
    expect(infos().some((l) => /^cache: not saving r2d1-.*: the cache mode "read" does not allow writes$/.test(l))).toBe(true);
    expect(warnings()).toEqual([]);
  });

  it('a fresh start (nothing committed) with the cache on: found=false and no cache calls', async () => {
    const job = uniqueJobId('cache-fresh');
    const dest = join(await tempDir(), 'ckpt');
    const info = await pullWithCache(countedFetcher().fetcher, `r2://jobs/${job}/latest`, dest, false);
    expect(info).toMatchObject({ found: false, cached: false, bytes: 0, files: 0, downloaded: 0 });
    const empty = await pullWithCache(countedFetcher().fetcher, `r2://datasets/none-${randomBytes(4).toString('hex')}`, dest, false);
    expect(empty.found).toBe(false);
    expect(fake.twirpCalls).toEqual([]);
    expect(fake.blobCalls).toEqual([]);
    expect(warnings()).toEqual([]);
  });

  it('a prefix pulled into the workspace itself is not cached (the archive would hold the checkout)', async () => {
    const prefix = `datasets/ws-${randomBytes(4).toString('hex')}`;
    await putObject(`${prefix}/a.txt`, 'a');
    const info = await pullWithCache(countedFetcher().fetcher, `r2://${prefix}`, workspace, false);
    expect(info).toMatchObject({ found: true, files: 1 });
    expect(fake.twirpCalls).toEqual([]);
    expect(warnings()).toEqual([expect.stringContaining(`holds the workspace (${workspace})`)]);
  });

  /** A path under the temp dir, not created: a dest the fetcher creates (removed after the test). */
  function freshDest(): string {
    const dir = join(workspace, '..', `r2d1-cache-dest-${randomBytes(4).toString('hex')}`);
    testCleanups.push(() => rm(dir, { recursive: true, force: true }));
    return dir;
  }
});

describe('cacheKey', () => {
  const fp = 'ab'.repeat(32);
  it('is r2d1-<readable source>-<32 hex of the fingerprint>, usable as an Actions cache key', () => {
    expect(cacheKey('r2://jobs/run_7/latest', fp)).toMatch(/^r2d1-jobs-run_7-latest-[0-9a-f]{32}$/);
    expect(cacheKey('r2://datasets/mnist/', fp)).toMatch(/^r2d1-datasets-mnist-[0-9a-f]{32}$/);
    const odd = cacheKey(`r2://data sets/a,b;c/${'x'.repeat(600)}`, fp);
    expect(odd).not.toContain(',');
    expect(odd).not.toContain(' ');
    expect(odd.length).toBeLessThanOrEqual(512);
  });
  it('depends on the fingerprint, not only on the source', () => {
    expect(cacheKey('r2://jobs/a/latest', fp)).toBe(cacheKey('r2://jobs/a/latest', fp));
    expect(cacheKey('r2://jobs/a/latest', fp)).not.toBe(cacheKey('r2://jobs/a/latest', 'cd'.repeat(32)));
  });
});

/** Parses a GITHUB_OUTPUT file (`name<<delimiter` … `delimiter` blocks). */
function parseOutputs(text: string): Record<string, string> {
  const outputs: Record<string, string> = {};
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const m = /^([^<]+)<<(.+)$/.exec(lines[i]!);
    if (!m) continue;
    const value: string[] = [];
    for (i++; i < lines.length && lines[i] !== m[2]; i++) value.push(lines[i]!);
    outputs[m[1]!] = value.join('\n');
  }
  return outputs;
}
