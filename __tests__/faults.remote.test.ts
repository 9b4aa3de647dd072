/**
 * A hostile or broken bucket: committed versions whose manifest lists a missing file, a wrong hash or
 * size, paths that are absolute, climb out, or collide after Unicode normalisation, a manifest that is
 * not JSON or names another job; and prefix (dataset) listings with such keys.
 *
 * For every case: `latest` and `r2://jobs/<id>/<name>` fall back to the newest version that verifies
 * (even when D1 points at the hostile one), landing its exact bytes; and when the hostile version is
 * the only one, `pull` refuses with an error naming the problem (never "fresh start") and leaves no
 * partial directory.
 */
import { afterAll, afterEach, describe, expect, it } from '@jest/globals';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Courier, Fetcher, R2d1Error, silentLogger } from '../src/index.js';
import {
  capturingLogger,
  closeS3,
  deleteKeys,
  hashDir,
  listKeys,
  listTree,
  openCore,
  putObject,
  putRawKey,
  randomFile,
  sha256,
  writeCheckpoint,
} from './helpers/checkpoints.js';
import { tally } from './helpers/faultProxy.js';
import { d1Query, makeTempDir, rigEnv, uniqueJobId } from './rig/rig.js';

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});
afterAll(() => closeS3());

async function tempDir(prefix = 'r2d1-remote-'): Promise<string> {
  const dir = await makeTempDir(prefix);
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

function fetcher(logger = silentLogger): Fetcher {
  const f = new Fetcher(openCore(rigEnv()), { logger });
  cleanups.push(() => f.close());
  return f;
}

interface Entry {
  path: string;
  size: number;
  sha256: string;
}

interface Hostile {
  name: string;
  /** Objects stored under the version prefix (relative path → bytes); written with the key verbatim. */
  objects: Record<string, string | Buffer>;
  /** The manifest: built from the objects, then changed (or replaced by raw text). */
  manifest: (m: Record<string, unknown> & { files: Entry[] }, ctx: { job: string }) => Record<string, unknown> | string;
  /** What the refusal must mention. */
  error: RegExp;
}

const entry = (path: string, data: string | Buffer): Entry => ({ path, size: Buffer.byteLength(data), sha256: sha256(data) });
const model = randomFile(4000);
const NFC = 'caf\u00e9.bin';
const NFD = 'cafe\u0301.bin';

const CASES: Hostile[] = [
  {
    name: 'manifest lists a file that is missing',
    objects: { 'model.bin': model },
    manifest: (m) => ({ ...m, files: [...m.files, entry('ghost.bin', 'never uploaded')] }),
    error: /ghost\.bin/,
  },
  {
    name: 'manifest has the wrong hash for a file',
    objects: { 'model.bin': model },
    manifest: (m) => ({ ...m, files: [{ ...m.files[0]!, sha256: sha256('something else') }] }),
    error: /model\.bin does not match its manifest/,
  },
  {
    name: 'manifest has the wrong size for a file',
    objects: { 'model.bin': model },
    manifest: (m) => ({ ...m, files: [{ ...m.files[0]!, size: model.length + 1 }] }),
    error: /model\.bin.*expected 4001 bytes/,
  },
  {
    name: 'manifest is not JSON',
    objects: { 'model.bin': model },
    manifest: (m) => JSON.stringify(m).slice(0, 60),
    error: /manifest\.json is invalid: not JSON/,
  },
  {
    name: 'manifest lists an absolute path',
    objects: { 'model.bin': model },
    manifest: (m) => ({ ...m, files: [entry('/etc/r2d1-hostile', 'x')] }),
    error: /\/etc\/r2d1-hostile.*absolute/,
  },
  {
    name: 'manifest lists a path climbing out with ..',
    objects: { 'model.bin': model },
    manifest: (m) => ({ ...m, files: [entry('../../escape.bin', 'x')] }),
    error: /\.\.\/\.\.\/escape\.bin/,
  },
  {
    name: 'manifest lists two names that collide after Unicode normalisation',
    objects: { [NFC]: 'one', [NFD]: 'two' },
    manifest: (m) => m,
    error: /collide/,
  },
  {
    name: 'manifest lists a file that is also a directory',
    objects: { a: 'file', 'a/b': 'nested' },
    manifest: (m) => m,
    error: /collide/,
  },
  {
    name: "manifest names another job's files",
    objects: { 'model.bin': model },
    manifest: (m) => ({ ...m, jobId: 'someone-else', prefix: String(m.prefix).replace(/^jobs\/[^/]+\//, 'jobs/someone-else/') }),
    error: /names another job/,
  },
];

/** Stores a committed-looking version: its objects, then its manifest. Returns the version prefix. */
async function plant(job: string, c: Hostile, epoch: number, timestamp: number): Promise<{ prefix: string; manifestKey: string }> {
  const version = `e${epoch}-t${Math.round(timestamp * 1000)}-0badc0de`;
  const prefix = `jobs/${job}/ck/${version}/`;
  for (const [path, data] of Object.entries(c.objects)) await putRawKey(`${prefix}${path}`, data);
  const sidecar = JSON.stringify({ name: 'ck', epoch, timestamp });
  const base = {
    format: 'r2d1-manifest/1',
    jobId: job,
    name: 'ck',
    epoch,
    timestamp,
    metadata: {},
    version,
    prefix,
    sidecarSha256: sha256(sidecar),
    sidecar,
    files: Object.entries(c.objects).map(([path, data]) => entry(path, data)),
    bytes: 0,
    committedAt: new Date().toISOString(),
  };
  const manifest = c.manifest(base, { job });
  const manifestKey = `jobs/${job}/ck/${version}.manifest.json`;
  await putObject(manifestKey, typeof manifest === 'string' ? manifest : JSON.stringify(manifest));
  return { prefix, manifestKey };
}

describe('a hostile remote', () => {
  it.each(CASES.map((c) => [c.name, c] as const))('%s: latest falls back to the newest version that verifies; alone, pull refuses and lands nothing', async (_name, c) => {
    // A job with a good epoch-1 version, then the hostile epoch-2 version, newer; D1 points at the hostile one.
    const job = uniqueJobId('hostile');
    const src = await tempDir();
    await writeCheckpoint(src, 'ck', { epoch: 1, timestamp: 1_700_000_000, files: { 'model.bin': randomFile(3000), 'config.json': '{}' } });
    const courier = new Courier(openCore(rigEnv()), { logger: silentLogger });
    expect((await courier.ship(src, { jobId: job, timeout: 20 })).ok).toBe(true);
    courier.close();
    const hostile = await plant(job, c, 2, 1_700_000_100);
    await d1Query('UPDATE checkpoints SET epoch = 2, timestamp = 1700000100, r2_prefix = ? WHERE job_id = ? AND name = ?', [hostile.prefix, job, 'ck']);

    const fallbacks: unknown[] = [];
    for (const uri of [`r2://jobs/${job}/latest`, `r2://jobs/${job}/ck`]) {
      const dest = await tempDir('r2d1-dest-');
      const logger = capturingLogger();
      const info = await fetcher(logger)
        .pull(uri, { dest })
        .catch((err: unknown) => ({ found: false, epoch: String(err) }));
      const landed = info.found ? await hashDir(join(dest, 'ck')) : undefined;
      fallbacks.push({
        uri,
        epoch: info.epoch,
        identical: JSON.stringify(landed) === JSON.stringify(await hashDir(join(src, 'ck'))),
        tree: (await listTree(dest)).filter((e) => !e.startsWith('.r2d1')),
        warned: c.error.test(logger.warnings().join('\n')),
      });
    }

    // The hostile version alone: an error naming the problem, never a fresh start; nothing put in place.
    const lonely = uniqueJobId('hostile-only');
    await plant(lonely, c, 2, 1_700_000_100);
    const dest = await tempDir('r2d1-dest-');
    const outcome = await fetcher()
      .pull(`r2://jobs/${lonely}/latest`, { dest })
      .then(
        (info) => `resolved: found=${info.found}`,
        (err: unknown) => (err instanceof R2d1Error ? `${err.code}: ${err.message}` : `other error: ${String(err)}`),
      );
    const leftovers = (await listTree(dest)).filter((e) => e !== '.r2d1/');
    const fellBack = fallbacks.every((f) => (f as { epoch: unknown; identical: boolean }).epoch === 1 && (f as { identical: boolean }).identical);
    // committed: the right bytes or a clear refusal; lost: a "fresh start" (training would start over); corrupted: hostile data landed.
    const verdict = leftovers.length > 0 || !fellBack ? 'corrupted' : outcome.startsWith('resolved') ? 'lost' : 'committed';
    tally('remote', c.name, verdict, { alone: outcome.slice(0, 100) });

    for (const uri of [`r2://jobs/${job}/latest`, `r2://jobs/${job}/ck`]) {
      expect(fallbacks.shift()).toEqual({ uri, epoch: 1, identical: true, tree: ['ck.json', 'ck/', 'ck/config.json', 'ck/model.bin'], warned: true });
    }
    expect(outcome).toMatch(/^(VERIFY|NOT_FOUND|UNSAFE_KEY): /);
    expect(outcome).toMatch(c.error);
    expect(leftovers).toEqual([]);
    await deleteKeys(await listKeys(`jobs/${lonely}/`));
  });

  it.each([
    ['a key climbing out with ..', (p: string) => `${p}../../escape.txt`, /escape\.txt.*climbs out/],
    ['an absolute key', (p: string) => `${p}/etc/r2d1-abs.txt`, /absolute/],
    ['a key with backslashes', (p: string) => `${p}sub\\..\\..\\escape.txt`, /backslash/],
    ['two keys that collide after Unicode normalisation', (p: string) => `${p}${NFD}`, /would land on the same path/],
  ] as const)('a dataset prefix holding %s: pull refuses naming the key, and writes nothing at all', async (name, hostileKey, error) => {
    const prefix = `datasets/${uniqueJobId('hostile')}/`;
    await putObject(`${prefix}good.txt`, 'good');
    await putObject(`${prefix}${NFC}`, 'nfc');
    await putRawKey(hostileKey(prefix), 'hostile');
    const cwd = await tempDir();
    const dest = join(cwd, 'data');
    const outcome = await fetcher()
      .pull(`r2://${prefix}`, { dest })
      .then(
        () => 'pulled',
        (err: unknown) => (err instanceof R2d1Error ? `${err.code}: ${err.message}` : String(err)),
      );
    tally('remote', `dataset prefix with ${name}`, outcome.startsWith('UNSAFE_KEY') && (await listTree(cwd)).length === 0 ? 'committed' : 'corrupted', { result: outcome.slice(0, 100) });
    expect(outcome).toMatch(/^UNSAFE_KEY: /);
    expect(outcome).toMatch(error);
    expect(await listTree(cwd)).toEqual([]);
    await deleteKeys(await listKeys(prefix));
  });
});
