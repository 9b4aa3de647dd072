/**
 * Fetcher against the miniflare rig: checkpoints shipped by a real Courier (or objects put straight
 * into the bucket) pulled back to disk, verified, cached, and refused when corrupt or hostile.
 */
import { afterAll, afterEach, describe, expect, it } from '@jest/globals';
import { readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  Fetcher,
  R2d1Error,
  silentLogger,
  type Backends,
  type FetcherTuning,
  type Logger,
  type ShipReport,
} from '../src/index.js';
import {
  capturingLogger,
  closeS3,
  deadUrl,
  getObject,
  hashDir,
  hookedCore,
  listKeys,
  listTree,
  manifestsOf,
  openCore,
  putObject,
  putRawKey,
  r2OnlyEnv,
  randomFile,
  sha256,
  shipWithCore,
  type CheckpointSpec,
} from './helpers/checkpoints.js';
import { d1Query, makeTempDir, rigEnv, uniqueJobId } from './rig/rig.js';

const MiB = 1024 * 1024;

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});
afterAll(() => closeS3());

async function tempDir(prefix = 'r2d1-fetch-'): Promise<string> {
  const dir = await makeTempDir(prefix);
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

function fetcherOn(backends: Backends = openCore(), tuning: Partial<FetcherTuning> = {}, logger: Logger = silentLogger): Fetcher {
  const fetcher = new Fetcher(backends, { logger, tuning });
  cleanups.push(() => fetcher.close());
  return fetcher;
}

/** Writes the checkpoints into a fresh dir and ships them with a real courier; returns the dir and sidecar texts. */
async function shipCheckpoints(
  job: string,
  checkpoints: Record<string, CheckpointSpec>,
  env: Record<string, string> = rigEnv(),
): Promise<{ dir: string; sidecars: Record<string, string>; report: ShipReport }> {
  const dir = await tempDir('r2d1-train-');
  return { dir, ...(await shipWithCore(dir, job, checkpoints, env)) };
}

async function rejection(promise: Promise<unknown>): Promise<R2d1Error> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(R2d1Error);
  return err as R2d1Error;
}

const sumSizes = (files: Record<string, { size: number }>) => Object.values(files).reduce((s, f) => s + f.size, 0);

describe('Fetcher: checkpoints', () => {
  it('a fresh start (nothing committed) is found=false, not an error, and creates nothing', async () => {
    const job = uniqueJobId('fresh');
    const parent = await tempDir();
    const dest = join(parent, 'dest');
    for (const backends of [openCore(), openCore(r2OnlyEnv())]) {
      const info = await fetcherOn(backends).pull(`r2://jobs/${job}/latest`, { dest });
      expect(info).toMatchObject({ found: false, cached: false, bytes: 0, files: 0, downloaded: 0, source: `r2://jobs/${job}/latest` });
      expect(info.name).toBeUndefined();
    }
    const slot = await fetcherOn().pull(`r2://jobs/${job}/slot_0`, { dest });
    expect(slot.found).toBe(false);
    expect((await listTree(parent)).filter((e) => e !== 'dest/')).toEqual([]);
    expect(await listTree(dest)).toEqual([]);
  });

  it('round trip: pull latest lands identical bytes and the sidecar; a second pull is cached; a local change or force re-downloads', async () => {
    const job = uniqueJobId('trip');
    const files = { 'model.bin': randomFile(1.5 * MiB), 'nested/deep/opt.bin': randomFile(300_000), 'config.json': '{"lr":0.1}' };
    const metadata = { loss: 0.25, note: 'round trip' };
    const { dir, sidecars, report } = await shipCheckpoints(job, { slot_0: { epoch: 6, files, metadata } });
    const local = await hashDir(join(dir, 'slot_0'));
    const total = sumSizes(local);
    const dest = await tempDir('r2d1-dest-');
    const fetcher = fetcherOn();
    const uri = `r2://jobs/${job}/latest`;

    const info = await fetcher.pull(uri, { dest });
    expect(info).toEqual({
      found: true,
      source: uri,
      localDir: join(dest, 'slot_0'),
      name: 'slot_0',
      epoch: 6,
      metadata,
      cached: false,
      bytes: total,
      files: 3,
      downloaded: total,
      key: report.shipped[0]!.key,
    });
    expect(await hashDir(join(dest, 'slot_0'))).toEqual(local);
    expect(await readFile(join(dest, 'slot_0.json'), 'utf8')).toBe(sidecars.slot_0);
    // Only the checkpoint, its sidecar and the state dir; no temp leftovers.
    expect((await listTree(dest)).filter((e) => e === '.r2d1/' || !e.startsWith('.r2d1/'))).toEqual([
      '.r2d1/',
      'slot_0.json',
      'slot_0/',
      'slot_0/config.json',
      'slot_0/model.bin',
      'slot_0/nested/',
      'slot_0/nested/deep/',
      'slot_0/nested/deep/opt.bin',
    ]);
    expect((await listTree(join(dest, '.r2d1'))).filter((e) => /tmp|old/.test(e))).toEqual([]);

    const again = await fetcher.pull(uri, { dest });
    expect(again).toMatchObject({ found: true, name: 'slot_0', epoch: 6, cached: true, downloaded: 0, bytes: total, files: 3 });

    // A local change (different size) is noticed and repaired.
    await writeFile(join(dest, 'slot_0', 'model.bin'), 'tampered');
    const repaired = await fetcher.pull(uri, { dest });
    expect(repaired).toMatchObject({ cached: false, downloaded: total });
    expect(await hashDir(join(dest, 'slot_0'))).toEqual(local);

    // Same size, different bytes (and a new mtime) is noticed too.
    const size = local['config.json']!.size;
    await writeFile(join(dest, 'slot_0', 'config.json'), 'X'.repeat(size));
    const repaired2 = await fetcher.pull(uri, { dest });
    expect(repaired2).toMatchObject({ cached: false, downloaded: total });
    expect(await hashDir(join(dest, 'slot_0'))).toEqual(local);

    expect(await fetcher.pull(uri, { dest })).toMatchObject({ cached: true, downloaded: 0 });
    const forced = await fetcher.pull(uri, { dest, force: true });
    expect(forced).toMatchObject({ cached: false, downloaded: total });
    expect(await hashDir(join(dest, 'slot_0'))).toEqual(local);
    expect(await readFile(join(dest, 'slot_0.json'), 'utf8')).toBe(sidecars.slot_0);

    // Same size, and the landed record agreeing with the file's new mtime (as files and record restored
    // together from a cache would): only verify's re-hashing sees the change.
    const configPath = join(dest, 'slot_0', 'config.json');
    await writeFile(configPath, 'Y'.repeat(size));
    const recordPath = join(dest, '.r2d1', 'slot_0.json');
    const record = JSON.parse(await readFile(recordPath, 'utf8')) as { files: { path: string; mtimeMs: number }[] };
    record.files.find((f) => f.path === 'config.json')!.mtimeMs = (await stat(configPath)).mtimeMs;
    await writeFile(recordPath, JSON.stringify(record));
    expect(await fetcher.pull(uri, { dest })).toMatchObject({ cached: true, downloaded: 0 });
    expect(await fetcher.pull(uri, { dest, verify: true })).toMatchObject({ cached: false, downloaded: total });
    expect(await hashDir(join(dest, 'slot_0'))).toEqual(local);
    expect(await fetcher.pull(uri, { dest, verify: true })).toMatchObject({ cached: true, downloaded: 0 });
  });

  it('latest is the highest epoch across slots, with D1, without D1, and with D1 unreachable', async () => {
    const job = uniqueJobId('latest');
    const t0 = Math.floor(Date.now() / 1000);
    // The highest epoch was written first (older timestamp): latest is by epoch, not by time.
    const { dir } = await shipCheckpoints(job, {
      slot_b: { epoch: 7, timestamp: t0, files: { 'model.bin': randomFile(20_000) } },
      slot_a: { epoch: 5, timestamp: t0 + 10, files: { 'model.bin': randomFile(20_000) } },
    });
    const expected = await hashDir(join(dir, 'slot_b'));
    const envs = {
      d1: rigEnv(),
      r2only: r2OnlyEnv(),
      d1dead: rigEnv({ R2D1_D1_API_URL: await deadUrl() }),
    };
    for (const [label, env] of Object.entries(envs)) {
      const dest = await tempDir(`r2d1-dest-${label}-`);
      const info = await fetcherOn(openCore(env)).pull(`r2://jobs/${job}/latest`, { dest });
      expect({ label, name: info.name, epoch: info.epoch, found: info.found }).toEqual({ label, name: 'slot_b', epoch: 7, found: true });
      expect(await hashDir(join(dest, 'slot_b'))).toEqual(expected);
    }
  });

  it('latest stays the highest committed epoch when D1 lags behind the bucket (a commit whose D1 row was never written)', async () => {
    const job = uniqueJobId('lag');
    const t0 = Math.floor(Date.now() / 1000);
    await shipCheckpoints(job, {
      slot_0: { epoch: 1, timestamp: t0, files: { 'model.bin': randomFile(10_000) } },
      slot_1: { epoch: 2, timestamp: t0 + 1, files: { 'model.bin': randomFile(10_000) } },
    });
    // slot_0 moves on to epoch 3 while D1 is not written (as after a D1 outage: the row stays at epoch 1).
    await shipCheckpoints(job, { slot_0: { epoch: 3, timestamp: t0 + 2, files: { 'model.bin': randomFile(10_000) } } }, r2OnlyEnv());
    const rows = await d1Query<{ name: string; epoch: number }>('SELECT name, epoch FROM checkpoints WHERE job_id = ? ORDER BY name', [job]);
    expect(rows).toEqual([
      { name: 'slot_0', epoch: 1 },
      { name: 'slot_1', epoch: 2 },
    ]);
    expect((await manifestsOf(job, 'slot_0')).map((m) => m.manifest.epoch)).toEqual([3]);

    const withoutD1 = await fetcherOn(openCore(r2OnlyEnv())).pull(`r2://jobs/${job}/latest`, { dest: await tempDir() });
    expect([withoutD1.name, withoutD1.epoch]).toEqual(['slot_0', 3]);
    const withD1 = await fetcherOn().pull(`r2://jobs/${job}/latest`, { dest: await tempDir() });
    expect([withD1.name, withD1.epoch]).toEqual(['slot_0', 3]);
  });

  it('r2://jobs/<id>/<name> pulls that slot’s committed version', async () => {
    const job = uniqueJobId('slot');
    const { dir, sidecars } = await shipCheckpoints(job, {
      slot_a: { epoch: 1, files: { 'model.bin': randomFile(30_000), 'a.txt': 'A' } },
      slot_b: { epoch: 2, files: { 'model.bin': randomFile(30_000), 'b.txt': 'B' } },
    });
    const dest = await tempDir('r2d1-dest-');
    const info = await fetcherOn().pull(`r2://jobs/${job}/slot_a`, { dest });
    const committed = (await manifestsOf(job, 'slot_a'))[0]!.manifest;
    expect(info).toMatchObject({ found: true, name: 'slot_a', epoch: 1, files: 2, key: committed.prefix, cached: false });
    expect(await hashDir(join(dest, 'slot_a'))).toEqual(await hashDir(join(dir, 'slot_a')));
    expect(await readFile(join(dest, 'slot_a.json'), 'utf8')).toBe(sidecars.slot_a);
    expect((await listTree(dest)).filter((e) => !e.startsWith('.r2d1'))).toEqual(['slot_a.json', 'slot_a/', 'slot_a/a.txt', 'slot_a/model.bin']);
  });

  it('a file larger than partSize comes down as ranged parts and verifies', async () => {
    const job = uniqueJobId('big');
    const partSize = 5 * MiB;
    const big = randomFile(12 * MiB + 4321);
    const { dir } = await shipCheckpoints(job, { slot_0: { epoch: 1, files: { 'model.bin': big, 'small.txt': 'small' } } });
    const { backends, store } = hookedCore({});
    const dest = await tempDir('r2d1-dest-');
    const info = await fetcherOn(backends, { partSize, partsInFlight: 2 }).pull(`r2://jobs/${job}/latest`, { dest });
    expect(info).toMatchObject({ found: true, downloaded: big.length + 5, cached: false });
    expect(await hashDir(join(dest, 'slot_0'))).toEqual(await hashDir(join(dir, 'slot_0')));
    expect(sha256(await readFile(join(dest, 'slot_0', 'model.bin')))).toBe(sha256(big));

    const ranges = store.gets.filter((g) => g.key.endsWith('/model.bin')).map((g) => g.range);
    expect(ranges.sort((a, b) => a!.start - b!.start)).toEqual([
      { start: 0, end: partSize - 1 },
      { start: partSize, end: 2 * partSize - 1 },
      { start: 2 * partSize, end: big.length - 1 },
    ]);
    expect(store.gets.filter((g) => g.key.endsWith('/small.txt')).map((g) => g.range)).toEqual([undefined]);
  });

  it('a corrupted object fails verification naming it and lands nothing; a broken newest manifest makes latest fall back', async () => {
    const job = uniqueJobId('corrupt');
    const t0 = Math.floor(Date.now() / 1000);
    const { dir } = await shipCheckpoints(job, {
      slot_0: { epoch: 1, timestamp: t0, files: { 'model.bin': randomFile(50_000) } },
      slot_1: { epoch: 2, timestamp: t0 + 1, files: { 'model.bin': randomFile(50_000), 'config.json': '{}' } },
    });
    const newest = (await manifestsOf(job, 'slot_1'))[0]!;
    const victim = `${newest.manifest.prefix}model.bin`;
    await putObject(victim, randomFile(50_000)); // same size, other bytes

    // The slot has no other version: the pull refuses.
    const dest = await tempDir('r2d1-dest-');
    const err = await rejection(fetcherOn().pull(`r2://jobs/${job}/slot_1`, { dest }));
    expect(err.code).toBe('VERIFY');
    expect(err.message).toContain(victim);
    // Nothing put in place: no slot folder, no sidecar, no temp dirs; only the (empty of temps) state dir.
    const tree = await listTree(dest);
    expect(tree.filter((e) => e === '.r2d1/' || !e.startsWith('.r2d1/'))).toEqual(['.r2d1/']);
    expect(tree.filter((e) => /tmp|old/.test(e))).toEqual([]);

    // latest falls back to the newest version that verifies (slot_0, epoch 1), saying why; slot_1's
    // corrupt files never land.
    const logger = capturingLogger();
    const fallbackDest = await tempDir('r2d1-dest-');
    const info = await fetcherOn(openCore(rigEnv()), {}, logger).pull(`r2://jobs/${job}/latest`, { dest: fallbackDest });
    expect([info.found, info.name, info.epoch]).toEqual([true, 'slot_0', 1]);
    expect(logger.warnings().some((w) => w.includes(victim))).toBe(true);
    expect((await listTree(fallbackDest)).filter((e) => e.startsWith('slot_1'))).toEqual([]);

    // The newest manifest is not JSON any more: latest falls back to the older checkpoint of the other slot.
    await putObject(newest.key, 'this is {not json');
    for (const env of [rigEnv(), r2OnlyEnv()]) {
      const dest = await tempDir('r2d1-dest-');
      const info = await fetcherOn(openCore(env)).pull(`r2://jobs/${job}/latest`, { dest });
      expect([info.found, info.name, info.epoch]).toEqual([true, 'slot_0', 1]);
      expect(await hashDir(join(dest, 'slot_0'))).toEqual(await hashDir(join(dir, 'slot_0')));
    }
  });

  it('a file name in decomposed Unicode (NFD, as macOS writes) pulls back intact', async () => {
    const job = uniqueJobId('nfd');
    const nfd = 'cafe\u0301.bin'; // "café.bin" with a combining accent
    const data = randomFile(3000);
    // No "files" list in the sidecar: shipping does not depend on how the sidecar spells the name.
    await shipCheckpoints(job, { slot_0: { epoch: 1, files: { [nfd]: data, 'plain.bin': 'p' }, sidecar: { files: undefined } } });
    expect((await manifestsOf(job, 'slot_0'))[0]!.manifest.files.map((f) => f.path)).toContain(nfd);

    const dest = await tempDir('r2d1-dest-');
    const fetcher = fetcherOn();
    const info = await fetcher.pull(`r2://jobs/${job}/slot_0`, { dest });
    expect(info).toMatchObject({ found: true, name: 'slot_0', files: 2, bytes: 3001 });
    const pulled = await hashDir(join(dest, 'slot_0'));
    expect(Object.keys(pulled).map((p) => p.normalize('NFC')).sort()).toEqual([nfd.normalize('NFC'), 'plain.bin']);
    expect(Object.values(pulled).map((f) => f.sha256).sort()).toEqual([sha256(data), sha256('p')].sort());
    expect(await fetcher.pull(`r2://jobs/${job}/slot_0`, { dest })).toMatchObject({ cached: true, downloaded: 0 });
  });
});

describe('Fetcher: prefixes (datasets)', () => {
  it('mirrors a prefix, skips what is already there, re-downloads a changed object', async () => {
    const ds = uniqueJobId('ds');
    const objects: Record<string, Buffer> = {
      'a.txt': Buffer.from('alpha'),
      'sub/b.bin': randomFile(20_000),
      'sub/deeper/c.json': Buffer.from('{"c":3}'),
      'top level.csv': Buffer.from('x,y\n1,2\n'),
    };
    for (const [rel, body] of Object.entries(objects)) await putObject(`${ds}/${rel}`, body);
    const expected = Object.fromEntries(Object.entries(objects).map(([p, b]) => [p, { size: b.length, sha256: sha256(b) }]));
    const total = sumSizes(expected);
    const parent = await tempDir();
    const dest = join(parent, 'dest');
    const fetcher = fetcherOn();

    const info = await fetcher.pull(`r2://${ds}`, { dest });
    expect(info).toMatchObject({ found: true, source: `r2://${ds}`, localDir: dest, files: 4, bytes: total, downloaded: total, cached: false });
    expect(await hashDir(dest)).toEqual(Object.fromEntries(Object.entries(expected).sort(([a], [b]) => (a < b ? -1 : 1))));

    const again = await fetcher.pull(`r2://${ds}/`, { dest });
    expect(again).toMatchObject({ found: true, files: 4, bytes: total, downloaded: 0, cached: true });

    const changed = randomFile(20_000); // same size, new bytes
    await putObject(`${ds}/sub/b.bin`, changed);
    const third = await fetcher.pull(`r2://${ds}`, { dest });
    expect(third).toMatchObject({ cached: false, downloaded: changed.length, files: 4 });
    expect(sha256(await readFile(join(dest, 'sub', 'b.bin')))).toBe(sha256(changed));
    expect((await listTree(dest)).filter((e) => e.includes('tmp'))).toEqual([]);
    expect((await listTree(parent)).every((e) => e.startsWith('dest/'))).toBe(true);

    // A local file changed (same size) is re-downloaded too.
    await writeFile(join(dest, 'a.txt'), 'ALPHA');
    const fourth = await fetcher.pull(`r2://${ds}`, { dest });
    expect(fourth).toMatchObject({ cached: false, downloaded: 5 });
    expect(await readFile(join(dest, 'a.txt'), 'utf8')).toBe('alpha');
  });

  it.each([
    ['../../evil', 'climbs out'],
    ['a//b', 'empty'],
  ])('refuses a prefix holding the hostile key <prefix>/%s with UNSAFE_KEY, writing nothing', async (hostile, why) => {
    const ds = uniqueJobId('hostile');
    await putObject(`${ds}/fine.txt`, 'fine');
    await putRawKey(`${ds}/${hostile}`, 'evil');
    expect(await listKeys(`${ds}/`)).toEqual([`${ds}/${hostile}`, `${ds}/fine.txt`].sort());

    const root = await tempDir('r2d1-hostile-');
    const dest = join(root, 'a', 'b', 'dest');
    const err = await rejection(fetcherOn().pull(`r2://${ds}`, { dest }));
    expect(err.code).toBe('UNSAFE_KEY');
    expect(err.message).toContain(hostile);
    expect(err.message).toContain(why);
    expect(await listTree(root)).toEqual([]);
    await expect(stat(join(root, 'evil'))).rejects.toThrow();
    expect(await getObject(`${ds}/fine.txt`).then((b) => b.toString())).toBe('fine');
  });
});
