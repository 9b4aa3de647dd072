/**
 * Courier against the miniflare rig: R2 through its S3 endpoint, D1 through the REST stand-in.
 * Every test has its own job id and temp dirs; store wrappers around the real S3Store inject
 * slowness, hangs, failures and concurrent file changes.
 */
import { afterAll, afterEach, describe, expect, it, jest } from '@jest/globals';
import { appendFile, mkdir, open, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  CHECKPOINTS_SCHEMA,
  Catalog,
  Courier,
  D1Client,
  Fetcher,
  loadConfig,
  openBackends,
  silentLogger,
  type Backends,
  type Logger,
  type Manifest,
} from '../src/index.js';
import {
  abortedWithin,
  closeS3,
  capturingLogger,
  deadUrl,
  getObject,
  hangUntilAborted,
  hashDir,
  hookedCore,
  listKeys,
  listTree,
  manifestsOf,
  openCore,
  r2OnlyEnv,
  randomFile,
  sha256,
  sleep,
  versionFolders,
  waitFor,
  writeCheckpoint,
} from './helpers/checkpoints.js';
import { d1Query, makeTempDir, rigEnv, uniqueJobId } from './rig/rig.js';

const MiB = 1024 * 1024;
const TUNING = { retryBaseMs: 20, retryMaxMs: 200 };

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});
afterAll(() => closeS3());

function courierOn(backends: Backends, logger: Logger = silentLogger): Courier {
  const courier = new Courier(backends, { logger, tuning: TUNING });
  cleanups.push(() => courier.close());
  return courier;
}

function fetcherOn(backends: Backends): Fetcher {
  const fetcher = new Fetcher(backends, { logger: silentLogger });
  cleanups.push(() => fetcher.close());
  return fetcher;
}

async function tempDir(prefix = 'r2d1-courier-'): Promise<string> {
  const dir = await makeTempDir(prefix);
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

const manifestEpochs = async (job: string, name: string) => (await manifestsOf(job, name)).map((m) => m.manifest.epoch);

/** The manifest's file list as hashDir reports it: path → {size, sha256}. */
const filesOf = (m: Manifest) => Object.fromEntries(m.files.map((f) => [f.path, { size: f.size, sha256: f.sha256 }]));

async function d1Rows(job: string) {
  return d1Query<{ job_id: string; name: string; epoch: number; timestamp: number; r2_prefix: string; metadata: string }>(
    'SELECT job_id, name, epoch, timestamp, r2_prefix, metadata FROM checkpoints WHERE job_id = ? ORDER BY name',
    [job],
  );
}

describe('Courier: watch, ship, flush', () => {
  it('ships a checkpoint written while watching; bucket holds the files and a manifest with their SHA-256; D1 has the row', async () => {
    const job = uniqueJobId('ship');
    const dir = await tempDir();
    const courier = courierOn(openCore());
    await courier.watch(dir, { jobId: job, pollEvery: 0.5 });

    const files = {
      'model.bin': randomFile(3 * MiB + 123),
      'nested/optimizer.bin': randomFile(MiB),
      'config.json': JSON.stringify({ lr: 0.001, layers: 12 }),
    };
    const timestamp = 1733300000.25;
    const metadata = { loss: 0.125, step: 3000, tags: ['a', 'b'] };
    const sidecarText = await writeCheckpoint(dir, 'slot_0', { epoch: 3, timestamp, files, metadata });
    const local = await hashDir(join(dir, 'slot_0'));
    const total = Object.values(local).reduce((s, f) => s + f.size, 0);

    const report = await courier.flush({ timeout: 30 });
    expect(report.ok).toBe(true);
    expect(report.failed).toEqual([]);
    expect(report.d1Pending).toEqual([]);
    expect(report.shipped).toHaveLength(1);
    const shipped = report.shipped[0]!;
    expect(shipped).toMatchObject({ name: 'slot_0', epoch: 3, files: 3, bytes: total });
    expect(shipped.key).toMatch(new RegExp(`^jobs/${job}/slot_0/e3-t1733300000250-[0-9a-f]{8}/$`));
    const version = shipped.key.slice(`jobs/${job}/slot_0/`.length, -1);
    const manifestKey = `jobs/${job}/slot_0/${version}.manifest.json`;

    // Exactly the files plus the manifest, nothing else.
    expect(await listKeys(`jobs/${job}/`)).toEqual([...Object.keys(local).map((p) => shipped.key + p), manifestKey].sort());

    const manifest = JSON.parse((await getObject(manifestKey)).toString('utf8')) as Manifest;
    expect(manifest).toMatchObject({
      format: 'r2d1-manifest/1',
      jobId: job,
      name: 'slot_0',
      epoch: 3,
      timestamp,
      metadata,
      version,
      prefix: shipped.key,
      sidecar: sidecarText,
      sidecarSha256: sha256(sidecarText),
      bytes: total,
    });
    expect(manifest.files.map((f) => f.path)).toEqual(Object.keys(local));
    expect(filesOf(manifest)).toEqual(local);
    // The stored objects really are those bytes.
    for (const [path, digest] of Object.entries(local)) {
      expect(sha256(await getObject(shipped.key + path))).toBe(digest.sha256);
    }

    const rows = await d1Rows(job);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ job_id: job, name: 'slot_0', epoch: 3, r2_prefix: shipped.key });
    expect(rows[0]!.timestamp).toBeCloseTo(timestamp, 3);
    expect(JSON.parse(rows[0]!.metadata)).toEqual(metadata);
  });

  it.each([
    { keep: 1, expected: { slot_0: [3], slot_1: [4] } },
    { keep: 2, expected: { slot_0: [3, 1], slot_1: [4, 2] } },
  ])('rotating slots with rising epochs keeps $keep committed version(s) per slot', async ({ keep, expected }) => {
    const job = uniqueJobId(`rot${keep}`);
    const dir = await tempDir();
    const courier = courierOn(openCore());
    await courier.watch(dir, { jobId: job, pollEvery: 0.5, keep });

    const t0 = Math.floor(Date.now() / 1000);
    const content = new Map<number, Buffer>();
    for (let epoch = 1; epoch <= 4; epoch++) {
      const name = `slot_${(epoch - 1) % 2}`;
      content.set(epoch, randomFile(64 * 1024 + epoch));
      await writeCheckpoint(dir, name, { epoch, timestamp: t0 + epoch, files: { 'model.bin': content.get(epoch)! } });
      await waitFor(`epoch ${epoch} committed`, async () => (await manifestEpochs(job, name)).includes(epoch), 8000);
    }
    const report = await courier.flush({ timeout: 30 });
    expect(report.ok).toBe(true);
    expect(report.shipped.map((s) => [s.name, s.epoch])).toEqual([
      ['slot_0', 1],
      ['slot_1', 2],
      ['slot_0', 3],
      ['slot_1', 4],
    ]);

    for (const [name, epochs] of Object.entries(expected)) {
      const manifests = await manifestsOf(job, name);
      expect(manifests.map((m) => m.manifest.epoch)).toEqual(epochs);
      // Superseded versions are gone entirely (files too), not just uncommitted.
      expect(await versionFolders(job, name)).toEqual(manifests.map((m) => m.manifest.version).sort());
      for (const { manifest } of manifests) {
        expect(manifest.files).toEqual([{ path: 'model.bin', size: content.get(manifest.epoch)!.length, sha256: sha256(content.get(manifest.epoch)!) }]);
      }
    }

    const rows = await d1Rows(job);
    expect(rows.map((r) => [r.name, r.epoch])).toEqual([
      ['slot_0', 3],
      ['slot_1', 4],
    ]);
    const reader = openCore();
    try {
      const latest = await new Catalog(reader.store, reader.d1, silentLogger).latest(job);
      expect(latest?.manifest).toMatchObject({ name: 'slot_1', epoch: 4 });
    } finally {
      reader.store.close();
    }
  });

  it('detects a new checkpoint through file-system events within about a second (pollEvery 30)', async () => {
    const job = uniqueJobId('event');
    const dir = await tempDir();
    const courier = courierOn(openCore());
    await courier.watch(dir, { jobId: job, pollEvery: 30 });
    await sleep(100);

    const started = Date.now();
    await writeCheckpoint(dir, 'slot_0', { epoch: 1, files: { 'model.bin': randomFile(100_000) } });
    await waitFor('the manifest to appear without polling or flush', async () => (await manifestEpochs(job, 'slot_0')).includes(1), 5000, 25);
    expect(Date.now() - started).toBeLessThan(5000);

    const report = await courier.flush({ timeout: 10 });
    expect(report.ok).toBe(true);
    expect(report.shipped.map((s) => s.epoch)).toEqual([1]);
  });

  it('survives malformed sidecars, reports the ones still malformed at flush by file name, and ships them once fixed', async () => {
    const job = uniqueJobId('badsc');
    const dir = await tempDir();
    const logger = capturingLogger();
    const courier = courierOn(openCore(), logger);
    await courier.watch(dir, { jobId: job, pollEvery: 0.5 });

    const bad: Record<string, string> = {
      bad_trunc: '{"name": "bad_trunc", "epoch": 3, "timest',
      bad_text: 'epoch=3\nthis is not json\n',
      bad_name: JSON.stringify({ name: 'someone_else', epoch: 3, timestamp: 1733300000 }),
      bad_epoch: JSON.stringify({ name: 'bad_epoch', epoch: -1, timestamp: 1733300000 }),
    };
    for (const [name, text] of Object.entries(bad)) {
      await writeCheckpoint(dir, name, { epoch: 3, files: { 'model.bin': randomFile(1000) }, rawSidecar: text });
    }
    // Each malformed sidecar is noticed (and warned about by name) without crashing the courier.
    await waitFor('a warning for every malformed sidecar', () =>
      Object.keys(bad).every((name) => logger.warnings().some((w) => w.includes(`${name}.json`))),
    8000);
    expect(await listKeys(`jobs/${job}/`)).toEqual([]);

    // The courier still works: a good checkpoint ships.
    await writeCheckpoint(dir, 'good', { epoch: 4, files: { 'model.bin': randomFile(1000) } });
    await waitFor('good to ship', async () => (await manifestEpochs(job, 'good')).includes(4), 8000);

    // Fixing two sidecars ships them.
    for (const name of ['bad_trunc', 'bad_name']) {
      await writeFile(join(dir, `${name}.json`), JSON.stringify({ name, epoch: 5, timestamp: Date.now() / 1000, metadata: { fixed: true } }));
    }
    for (const name of ['bad_trunc', 'bad_name']) {
      await waitFor(`${name} to ship once fixed`, async () => (await manifestEpochs(job, name)).includes(5), 8000);
    }

    const report = await courier.flush({ timeout: 15 });
    expect(report.ok).toBe(false);
    expect(report.shipped.map((s) => s.name).sort()).toEqual(['bad_name', 'bad_trunc', 'good']);
    expect(report.failed.map((f) => f.name).sort()).toEqual(['bad_epoch', 'bad_text']);
    for (const f of report.failed) expect(f.reason).toContain(`${f.name}.json`);
    expect(report.failed.find((f) => f.name === 'bad_epoch')!.reason).toMatch(/epoch/);
    expect(await listKeys(`jobs/${job}/bad_text/`)).toEqual([]);
    expect(await listKeys(`jobs/${job}/bad_epoch/`)).toEqual([]);
  });

  it('a sidecar seen half-written, then completed with the content already committed, is not reported as failed', async () => {
    const job = uniqueJobId('rewrite');
    const dir = await tempDir();
    const logger = capturingLogger();
    const courier = courierOn(openCore(), logger);
    await courier.watch(dir, { jobId: job, pollEvery: 0.5 });
    const text = await writeCheckpoint(dir, 'slot_0', { epoch: 1, files: { 'model.bin': randomFile(1000) } });
    await waitFor('epoch 1 committed', async () => (await manifestEpochs(job, 'slot_0')).includes(1), 8000);

    // The training code rewrites the same sidecar non-atomically: the courier catches it half-written.
    await writeFile(join(dir, 'slot_0.json'), text.slice(0, 20));
    await waitFor('the half-written sidecar to be noticed', () => logger.warnings().some((w) => w.includes('slot_0.json')), 5000, 10);
    await writeFile(join(dir, 'slot_0.json'), text);
    await sleep(800); // an event and at least one poll see the completed file

    const report = await courier.flush({ timeout: 10 });
    expect(report.failed).toEqual([]);
    expect(report.ok).toBe(true);
    expect(report.shipped.map((s) => [s.name, s.epoch])).toEqual([['slot_0', 1]]);
    expect(await manifestEpochs(job, 'slot_0')).toEqual([1]);
  });

  it('a slot rewritten while its previous version uploads: the older upload is aborted, the newer one is committed', async () => {
    const job = uniqueJobId('super');
    const dir = await tempDir();
    const held: { key: string; aborted: boolean }[] = [];
    const { backends } = hookedCore({
      put: async (key, _body, _size, opts, next) => {
        if (key.includes('/e1-') && !key.endsWith('.manifest.json')) {
          const entry = { key, aborted: false };
          held.push(entry);
          // A slow upload: held until the courier aborts it (or 4 s pass).
          entry.aborted = await abortedWithin(opts?.signal, 4000);
          if (entry.aborted) return hangUntilAborted(opts?.signal);
        }
        return next();
      },
    });
    const courier = courierOn(backends);
    await courier.watch(dir, { jobId: job, pollEvery: 30 });

    const t0 = Date.now() / 1000;
    await writeCheckpoint(dir, 'slot_0', { epoch: 1, timestamp: t0, files: { 'model.bin': randomFile(200_000), 'aux.bin': randomFile(1000) } });
    await waitFor('the epoch-1 upload to start', () => held.length > 0, 5000, 10);
    const newer = { 'model.bin': randomFile(200_000), 'aux.bin': randomFile(1000) };
    await writeCheckpoint(dir, 'slot_0', { epoch: 2, timestamp: t0 + 1, files: newer });
    const local = await hashDir(join(dir, 'slot_0'));

    const report = await courier.flush({ timeout: 20 });
    expect(report.ok).toBe(true);
    expect(report.shipped.map((s) => [s.name, s.epoch])).toEqual([['slot_0', 2]]);
    const manifests = await manifestsOf(job, 'slot_0');
    expect(manifests.map((m) => m.manifest.epoch)).toEqual([2]);
    expect(filesOf(manifests[0]!.manifest)).toEqual(local);
    expect((await listKeys(`jobs/${job}/slot_0/`)).filter((k) => k.includes('/e1-'))).toEqual([]);
    // The superseded upload was cut short, not left to run to its end.
    expect(held.length).toBeGreaterThan(0);
    expect(held.every((h) => h.aborted)).toBe(true);
    expect((await d1Rows(job)).map((r) => [r.name, r.epoch])).toEqual([['slot_0', 2]]);
  });

  it.each(['append', 'overwrite in place'])(
    'a file that changes while it uploads (%s) is not committed with stale content; the retry commits the final bytes',
    async (mode) => {
      const job = uniqueJobId('chg');
      const dir = await tempDir();
      const original = randomFile(2 * MiB);
      const committedManifests: Manifest[] = [];
      let changed = false;
      const { backends, store } = hookedCore({
        put: async (key, body, _size, _opts, next) => {
          if (key.endsWith('.manifest.json')) committedManifests.push(JSON.parse((body as Buffer).toString('utf8')) as Manifest);
          if (key.endsWith('/model.bin') && !changed) {
            changed = true;
            const path = join(dir, 'slot_0', 'model.bin');
            await sleep(20); // the change lands a clock tick after the courier looked at the file
            if (mode === 'append') {
              await appendFile(path, randomFile(4096));
            } else {
              const handle = await open(path, 'r+');
              try {
                await handle.write(randomFile(4096), 0, 4096, 0);
              } finally {
                await handle.close();
              }
            }
          }
          return next();
        },
      });
      const courier = courierOn(backends);
      await writeCheckpoint(dir, 'slot_0', { epoch: 1, files: { 'model.bin': original, 'config.json': '{}' } });

      const report = await courier.ship(dir, { jobId: job, timeout: 20 });
      expect(changed).toBe(true);
      const final = await hashDir(join(dir, 'slot_0'));
      expect(final['model.bin']!.sha256).not.toBe(sha256(original));

      expect(report.ok).toBe(true);
      expect(report.shipped.map((s) => s.epoch)).toEqual([1]);
      // model.bin was uploaded at least twice (the changed attempt, then the retry).
      expect(store.puts.filter((k) => k.endsWith('/model.bin')).length).toBeGreaterThanOrEqual(2);
      // No manifest was ever written with the stale content; the committed one matches the disk.
      for (const m of committedManifests) expect(filesOf(m)).toEqual(final);
      const manifests = await manifestsOf(job, 'slot_0');
      expect(manifests).toHaveLength(1);
      expect(filesOf(manifests[0]!.manifest)).toEqual(final);
      expect(sha256(await getObject(`${manifests[0]!.manifest.prefix}model.bin`))).toBe(final['model.bin']!.sha256);
      // The aborted attempt's upload is cleaned away.
      expect(await versionFolders(job, 'slot_0')).toEqual([manifests[0]!.manifest.version]);
    },
  );

  it('a restarted courier ships nothing already committed (0 data puts)', async () => {
    const job = uniqueJobId('restart');
    const dir = await tempDir();
    await writeCheckpoint(dir, 'slot_0', { epoch: 1, files: { 'model.bin': randomFile(50_000) } });
    await writeCheckpoint(dir, 'slot_1', { epoch: 2, files: { 'model.bin': randomFile(50_000) } });
    const first = await courierOn(openCore()).ship(dir, { jobId: job, timeout: 20 });
    expect(first.ok).toBe(true);
    expect(first.shipped).toHaveLength(2);
    const keysBefore = await listKeys(`jobs/${job}/`);

    const { backends, store } = hookedCore({});
    const second = courierOn(backends);
    await second.watch(dir, { jobId: job, pollEvery: 0.5 });
    await sleep(700); // at least one poll
    const report = await second.flush({ timeout: 20 });
    expect(report).toEqual({ ok: true, shipped: [], failed: [], d1Pending: [] });
    expect(store.puts).toEqual([]);
    expect(await listKeys(`jobs/${job}/`)).toEqual(keysBefore);
  });

  it('after a crash between upload and manifest, a new courier ships the checkpoint and deletes the orphan version folder', async () => {
    const job = uniqueJobId('crash');
    const dir = await tempDir();
    const files = { 'model.bin': randomFile(100_000), 'config.json': '{"a":1}' };
    await writeCheckpoint(dir, 'slot_0', { epoch: 7, files });

    // The "crashing" courier: uploads every file, dies before the manifest, never cleans up.
    const crashed = hookedCore({
      put: async (key, _body, _size, _opts, next) => {
        if (key.endsWith('.manifest.json')) throw new Error('process killed before the commit');
        return next();
      },
      delete: async () => undefined,
    });
    const dead = await courierOn(crashed.backends).ship(dir, { jobId: job, timeout: 10 });
    expect(dead.ok).toBe(false);
    const orphans = await versionFolders(job, 'slot_0');
    expect(orphans).toHaveLength(1);
    expect(await manifestsOf(job, 'slot_0')).toEqual([]);
    expect((await listKeys(`jobs/${job}/slot_0/${orphans[0]}/`)).length).toBe(2);

    const report = await courierOn(openCore()).ship(dir, { jobId: job, timeout: 20 });
    expect(report.ok).toBe(true);
    expect(report.shipped.map((s) => [s.name, s.epoch])).toEqual([['slot_0', 7]]);
    const manifests = await manifestsOf(job, 'slot_0');
    expect(manifests).toHaveLength(1);
    expect(manifests[0]!.manifest.version).not.toBe(orphans[0]);
    expect(filesOf(manifests[0]!.manifest)).toEqual(await hashDir(join(dir, 'slot_0')));
    await waitFor('the orphan version folder to be deleted', async () => !(await versionFolders(job, 'slot_0')).includes(orphans[0]!), 5000);
    expect(await versionFolders(job, 'slot_0')).toEqual([manifests[0]!.manifest.version]);
  });

  it('flush({timeout: 1}) with a hanging upload returns within seconds, ok=false, naming the checkpoint and the timeout', async () => {
    const job = uniqueJobId('hang');
    const dir = await tempDir();
    const signals: AbortSignal[] = [];
    const { backends } = hookedCore({
      put: (_key, _body, _size, opts) => {
        if (opts?.signal) signals.push(opts.signal);
        return hangUntilAborted(opts?.signal);
      },
    });
    const courier = courierOn(backends);
    await courier.watch(dir, { jobId: job, pollEvery: 30 });
    await writeCheckpoint(dir, 'slot_0', { epoch: 2, files: { 'model.bin': randomFile(10_000) } });
    await waitFor('the upload to start', () => signals.length > 0, 5000, 10);

    const started = Date.now();
    const report = await courier.flush({ timeout: 1 });
    const seconds = (Date.now() - started) / 1000;
    expect(seconds).toBeGreaterThanOrEqual(0.9);
    expect(seconds).toBeLessThan(4);
    expect(report.ok).toBe(false);
    expect(report.shipped).toEqual([]);
    expect(report.failed).toEqual([{ name: 'slot_0', epoch: 2, reason: expect.stringMatching(/timed out/) }]);
    expect(report.failed[0]!.reason).toMatch(/1 ?s/);
    // The hanging upload was told to stop.
    await waitFor('the hanging upload to be aborted', () => signals.every((s) => s.aborted), 2000, 10);
    expect(await manifestsOf(job, 'slot_0')).toEqual([]);
  });
});

describe('Courier: R2-only mode and D1 trouble', () => {
  it('openBackends warns once per process about R2-only mode, and not at all with D1 configured', async () => {
    await jest.isolateModulesAsync(async () => {
      const fresh = await import('../src/index.js');
      const withD1 = capturingLogger();
      const b0 = fresh.openBackends(fresh.loadConfig(rigEnv()), withD1);
      expect(b0.d1).toBeDefined();
      expect(withD1.warnings()).toEqual([]);

      const log = capturingLogger();
      const b1 = fresh.openBackends(fresh.loadConfig(r2OnlyEnv()), log);
      const b2 = fresh.openBackends(fresh.loadConfig(r2OnlyEnv()), log);
      for (const b of [b0, b1, b2]) b.store.close();
      expect(b1.d1).toBeUndefined();
      expect(b2.d1).toBeUndefined();
      expect(log.warnings()).toHaveLength(1);
      expect(log.warnings()[0]).toMatch(/D1 is not configured/);
      expect(log.warnings()[0]).toMatch(/R2-only/);
      expect(log.warnings()[0]).toMatch(/R2D1_API_TOKEN/);
    });
  });

  it('R2-only config (no R2D1_API_TOKEN / R2D1_D1_DATABASE_ID) ships to the bucket and writes no D1 row', async () => {
    const job = uniqueJobId('r2only');
    const dir = await tempDir();
    const backends = openCore(r2OnlyEnv());
    expect(backends.d1).toBeUndefined();
    await writeCheckpoint(dir, 'slot_0', { epoch: 1, files: { 'model.bin': randomFile(10_000) } });
    const report = await courierOn(backends).ship(dir, { jobId: job, timeout: 20 });
    expect(report).toMatchObject({ ok: true, failed: [], d1Pending: [] });
    expect(report.shipped.map((s) => s.name)).toEqual(['slot_0']);
    const manifests = await manifestsOf(job, 'slot_0');
    expect(manifests.map((m) => m.manifest.epoch)).toEqual([1]);
    expect(filesOf(manifests[0]!.manifest)).toEqual(await hashDir(join(dir, 'slot_0')));
    await d1Query(CHECKPOINTS_SCHEMA); // the table exists whatever ran before, so the empty answer means something
    expect(await d1Rows(job)).toEqual([]);
  });

  it('with D1 unreachable, the checkpoint still commits to R2, flush returns promptly and names the slot in d1Pending', async () => {
    const job = uniqueJobId('d1down');
    const dir = await tempDir();
    const config = loadConfig(rigEnv({ R2D1_D1_API_URL: await deadUrl() }));
    const backends = openBackends(config, silentLogger);
    expect(backends.d1).toBeDefined();
    // The real client on the dead URL, with a short retry policy so its give-up is quick (and nothing
    // keeps retrying in the background after the test).
    backends.d1 = new D1Client(config.d1!, { retry: { attempts: 2, baseDelayMs: 10, maxDelayMs: 20 } });
    await writeCheckpoint(dir, 'slot_0', { epoch: 1, files: { 'model.bin': randomFile(10_000) } });

    const started = Date.now();
    const report = await courierOn(backends).ship(dir, { jobId: job, timeout: 20 });
    const seconds = (Date.now() - started) / 1000;
    expect(report.shipped.map((s) => s.name)).toEqual(['slot_0']);
    expect(report.failed).toEqual([]);
    expect(report.ok).toBe(true);
    expect(report.d1Pending).toEqual(['slot_0']);
    expect(await manifestEpochs(job, 'slot_0')).toEqual([1]);
    expect(await d1Rows(job)).toEqual([]);
    // D1 never blocks shipping: once D1 has refused, the flush waits at most its short D1 grace (5 s),
    // not its 20 s timeout.
    expect(seconds).toBeLessThan(10);
  });
});

describe('Courier: folder contents', () => {
  it('refuses a checkpoint holding a symlink that points outside its folder, with a clear reason; other checkpoints still ship', async () => {
    const job = uniqueJobId('symlink');
    const dir = await tempDir();
    const outside = await tempDir('r2d1-outside-');
    await writeFile(join(outside, 'secret.txt'), 'not part of any checkpoint');

    await writeCheckpoint(dir, 'linked', { epoch: 1, files: { 'model.bin': randomFile(1000) } });
    await symlink(join(outside, 'secret.txt'), join(dir, 'linked', 'leak.txt'));
    // A symlink that stays inside the folder is followed.
    await writeCheckpoint(dir, 'inner', { epoch: 2, files: { 'model.bin': randomFile(1000) } });
    await symlink(join(dir, 'inner', 'model.bin'), join(dir, 'inner', 'alias.bin'));

    const report = await courierOn(openCore()).ship(dir, { jobId: job, timeout: 15 });
    expect(report.ok).toBe(false);
    expect(report.shipped.map((s) => s.name)).toEqual(['inner']);
    expect(report.failed).toHaveLength(1);
    expect(report.failed[0]).toMatchObject({ name: 'linked', epoch: 1 });
    expect(report.failed[0]!.reason).toMatch(/leak\.txt/);
    expect(report.failed[0]!.reason).toMatch(/symlink.*outside/);
    expect(await listKeys(`jobs/${job}/linked/`)).toEqual([]);
    const inner = (await manifestsOf(job, 'inner'))[0]!.manifest;
    const model = inner.files.find((f) => f.path === 'model.bin')!;
    expect(inner.files.map((f) => f.path)).toEqual(['alias.bin', 'model.bin']);
    expect(inner.files[0]!.sha256).toBe(model.sha256);
  });

  it('after watch, flush reports a checkpoint that cannot ship (symlink outside) at once instead of retrying until its timeout', async () => {
    const job = uniqueJobId('symwatch');
    const dir = await tempDir();
    const outside = await tempDir('r2d1-outside-');
    await writeFile(join(outside, 'secret.txt'), 'outside');
    await writeCheckpoint(dir, 'linked', { epoch: 1, files: { 'model.bin': randomFile(1000) } });
    await symlink(join(outside, 'secret.txt'), join(dir, 'linked', 'leak.txt'));

    const courier = courierOn(openCore());
    await courier.watch(dir, { jobId: job, pollEvery: 0.5 });
    await sleep(300);
    const started = Date.now();
    const report = await courier.flush({ timeout: 6 });
    const seconds = (Date.now() - started) / 1000;
    expect(report.ok).toBe(false);
    expect(report.failed).toHaveLength(1);
    expect(report.failed[0]!.name).toBe('linked');
    expect(report.failed[0]!.reason).toMatch(/symlink.*outside/);
    expect(report.failed[0]!.reason).not.toMatch(/timed out/);
    expect(seconds).toBeLessThan(4);
  });

  it('ships an empty folder, a 0-byte file, and names with spaces and non-ASCII characters; they round-trip through the fetcher', async () => {
    const job = uniqueJobId('names');
    const dir = await tempDir();
    const dest = await tempDir('r2d1-dest-');
    const odd = 'ckpt ünï 模型';
    await writeCheckpoint(dir, 'empty', { epoch: 1, files: {} });
    await writeCheckpoint(dir, 'zero', { epoch: 2, files: { 'empty.bin': '', 'one.bin': 'x' } });
    await writeCheckpoint(dir, odd, {
      epoch: 3,
      files: { 'weights ä.bin': randomFile(5000), 'sub dir/日本 語.txt': 'こんにちは', 'emoji 🚀.json': '{"ok":true}' },
    });
    await mkdir(join(dir, 'zero', 'empty subdir'));

    const report = await courierOn(openCore()).ship(dir, { jobId: job, timeout: 20 });
    expect(report.ok).toBe(true);
    expect(report.failed).toEqual([]);
    expect(report.shipped.map((s) => [s.name, s.files, s.bytes]).sort()).toEqual(
      [
        ['empty', 0, 0],
        ['zero', 2, 1],
        [odd, 3, 5000 + Buffer.byteLength('こんにちは') + Buffer.byteLength('{"ok":true}')],
      ].sort(),
    );
    expect(await listKeys(`jobs/${job}/${odd}/`)).toEqual(
      expect.arrayContaining([expect.stringMatching(/\/weights ä\.bin$/), expect.stringMatching(/\/sub dir\/日本 語\.txt$/)]),
    );

    const fetcher = fetcherOn(openCore());
    for (const name of ['empty', 'zero', odd]) {
      const info = await fetcher.pull(`r2://jobs/${job}/${name}`, { dest });
      expect(info).toMatchObject({ found: true, name, cached: false });
      expect(await hashDir(join(dest, name))).toEqual(await hashDir(join(dir, name)));
      expect(await readFile(join(dest, `${name}.json`), 'utf8')).toBe(await readFile(join(dir, `${name}.json`), 'utf8'));
    }
    expect(await listTree(join(dest, 'empty'))).toEqual([]);
    expect((await listTree(dest)).filter((e) => !e.startsWith('.r2d1'))).toEqual(
      expect.arrayContaining(['empty/', 'zero/empty.bin', `${odd}/sub dir/日本 語.txt`, `${odd}/weights ä.bin`]),
    );
  });

  it('a sidecar listing a file whose name is in decomposed Unicode (NFD, as macOS writes) ships', async () => {
    const job = uniqueJobId('nfd');
    const dir = await tempDir();
    const nfd = 'cafe\u0301.bin'; // "café.bin" with a combining accent, spelled the same on disk and in the sidecar
    const data = randomFile(3000);
    await writeCheckpoint(dir, 'slot_0', { epoch: 1, files: { [nfd]: data } });
    expect(JSON.parse(await readFile(join(dir, 'slot_0.json'), 'utf8')).files).toEqual([nfd]);

    const report = await courierOn(openCore()).ship(dir, { jobId: job, timeout: 10 });
    expect(report.failed).toEqual([]);
    expect(report.ok).toBe(true);
    const manifest = (await manifestsOf(job, 'slot_0'))[0]!.manifest;
    expect(manifest.files.map((f) => [f.path.normalize('NFC'), f.size, f.sha256])).toEqual([[nfd.normalize('NFC'), 3000, sha256(data)]]);
  });
});
