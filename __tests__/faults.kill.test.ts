/**
 * The courier killed with SIGKILL at many points of a ship. A clean ship of a new epoch over a committed
 * one is measured first (every S3 and D1 request it makes, through the fault proxy); then, for each
 * request index k, `r2d1 ship` is started on a new epoch and killed the moment its k-th request reaches
 * the proxy, checked, and restarted. Throughout, a puller (in-process Fetcher) pulls `latest` over and
 * over and checks every result against the bytes of the epochs the test wrote.
 *
 * After every kill: every manifest in the bucket lists only files that are there (no partial version),
 * and the newest committed version (the previous one, or the new one when the kill came after its
 * commit) pulls back byte-identical. After every restart: the new epoch is committed, byte-identical,
 * and D1's row points at it.
 */
import { describe, expect, it } from '@jest/globals';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Fetcher, silentLogger, type Manifest } from '../src/index.js';
import { hashDir, listKeys, manifestsOf, openCore, randomFile, sleep, writeCheckpoint, type FileDigest } from './helpers/checkpoints.js';
import { cliEnv, runCli, startCli, type CliResult } from './helpers/cli.js';
import { FaultProxy, tally, viaProxies, type SeenRequest, faultScope } from './helpers/faultProxy.js';
import { d1Query, rig, rigEnv, uniqueJobId } from './rig/rig.js';

const MiB = 1024 * 1024;
/** R2D1_KILL_POINTS=all kills at every request of a ship; by default at the first request of each kind (about 11). */
const EVERY_POINT = process.env.R2D1_KILL_POINTS === 'all';

const { cleanups, tempDir } = faultScope('r2d1-kill-');

interface Known {
  sidecar: string;
  files: Record<string, FileDigest>;
}

const describeRequest = (r: SeenRequest) => `${r.op}${r.partNumber ? `#${r.partNumber}` : ''}${r.key ? ` ${r.key.split('/').slice(3).join('/')}` : ''}`;

describe('SIGKILL at every point of a ship', () => {
  it('the previous version always stays intact, the restart commits the new one, and a concurrent puller never sees a mixed or partial checkpoint', async () => {
    const proxy = await FaultProxy.start(rig().url);
    cleanups.push(() => proxy.close());
    const job = uniqueJobId('sigkill');
    const cwd = await tempDir();
    const dir = join(cwd, 'ckpt');
    const env = cliEnv(rigEnv(viaProxies(proxy, proxy)));
    const known = new Map<number, Known>();
    const problems: string[] = [];

    let epoch = 0;
    const writeEpoch = async () => {
      epoch++;
      // A 2-part multipart file (the CLI's parts are 8 MiB) and small files.
      const sidecar = await writeCheckpoint(dir, 'ck', {
        epoch,
        files: { 'model.bin': randomFile(9 * MiB), 'optim.bin': randomFile(200_000), 'config.json': JSON.stringify({ epoch }) },
      });
      known.set(epoch, { sidecar, files: await hashDir(join(dir, 'ck')) });
      return epoch;
    };
    const ship = (timeoutMs = 60_000) => runCli(['ship', 'ckpt', '--job-id', job, '--json'], { env, cwd, timeoutMs });

    /** Every committed manifest lists only objects that exist with its sizes: no reader can see a partial version. */
    const checkManifestsWhole = async (when: string) => {
      const keys = new Set(await listKeys(`jobs/${job}/ck/`));
      for (const { key, manifest } of await manifestsOf(job, 'ck')) {
        const missing = manifest.files.filter((f) => !keys.has(`${manifest.prefix}${f.path}`));
        if (missing.length > 0) problems.push(`${when}: ${key} is committed but ${missing.map((f) => f.path).join(', ')} missing`);
      }
    };
    /** Pulls the slot into a fresh folder and compares it with what the test wrote for that epoch. */
    const pullAndCompare = async (when: string): Promise<number | undefined> => {
      const dest = await tempDir('r2d1-kill-check-');
      const fetcher = new Fetcher(openCore(rigEnv()), { logger: silentLogger });
      try {
        const info = await fetcher.pull(`r2://jobs/${job}/ck`, { dest });
        const expected = known.get(info.epoch!);
        if (!expected || JSON.stringify(await hashDir(join(dest, 'ck'))) !== JSON.stringify(expected.files)) {
          problems.push(`${when}: pulled epoch ${info.epoch} does not match what was written`);
        }
        return info.epoch;
      } catch (err) {
        problems.push(`${when}: pull failed: ${String(err)}`);
        return undefined;
      } finally {
        fetcher.close();
        await rm(dest, { recursive: true, force: true });
      }
    };
    const d1Prefix = async () =>
      (await d1Query<{ r2_prefix: string }>('SELECT r2_prefix FROM checkpoints WHERE job_id = ? AND name = ?', [job, 'ck']))[0]?.r2_prefix;
    const newest = async (): Promise<Manifest | undefined> => (await manifestsOf(job, 'ck'))[0]?.manifest;

    // Epoch 1 committed; epoch 2 shipped cleanly to measure the requests of one ship.
    await writeEpoch();
    expect((await ship()).code).toBe(0);
    await writeEpoch();
    const measureFrom = proxy.requests.length;
    const measured = await ship();
    expect(measured.code).toBe(0);
    const measuredRequests = proxy.requests.slice(measureFrom);
    const sequence = measuredRequests.map(describeRequest);
    const total = sequence.length;
    // Kill points (10): the first request of each kind (listing, manifest read, D1, data PUT, multipart
    // create, first part, complete, manifest PUT = the commit), the one after the commit (the D1 row or
    // the cleanup listing), and the last one (the cleanup's deletes).
    const kinds = measuredRequests.map((r) => (r.key?.endsWith('.manifest.json') ? `${r.op} manifest` : r.op === 'UploadPart' ? `part ${r.partNumber}` : r.op));
    const firsts = ['ListObjectsV2', 'GetObject manifest', 'D1Query', 'PutObject', 'CreateMultipartUpload', 'part 1', 'CompleteMultipartUpload', 'PutObject manifest'];
    const commitAt = kinds.indexOf('PutObject manifest') + 1;
    const points = EVERY_POINT
      ? Array.from({ length: total }, (_, i) => i + 1)
      : [...new Set([...firsts.map((kind) => kinds.indexOf(kind) + 1).filter((k) => k > 0), commitAt + 1, total])].sort((a, b) => a - b);

    // The puller: latest, again and again, into the same folder (cached when unchanged).
    let stop = false;
    const seen = { pulls: 0, epochs: new Set<number>(), mixed: 0, errors: [] as string[] };
    const pullDest = await tempDir('r2d1-kill-puller-');
    const puller = (async () => {
      const fetcher = new Fetcher(openCore(rigEnv()), { logger: silentLogger });
      try {
        while (!stop) {
          try {
            const info = await fetcher.pull(`r2://jobs/${job}/latest`, { dest: pullDest });
            seen.pulls++;
            if (!info.found) {
              seen.errors.push('latest not found');
              continue;
            }
            seen.epochs.add(info.epoch!);
            const expected = known.get(info.epoch!);
            const landed = await hashDir(join(pullDest, 'ck'));
            const sidecar = await readFile(join(pullDest, 'ck.json'), 'utf8');
            if (!expected || JSON.stringify(landed) !== JSON.stringify(expected.files) || sidecar !== expected.sidecar) seen.mixed++;
          } catch (err) {
            seen.errors.push(String(err));
          }
          await sleep(100);
        }
      } finally {
        fetcher.close();
      }
    })();

    const outcomes: string[] = [];
    try {
      for (const k of points) {
        const previous = epoch;
        const next = await writeEpoch();
        const from = proxy.requests.length;
        const child = startCli(['ship', 'ckpt', '--job-id', job, '--json'], { env, cwd, timeoutMs: 60_000 });
        let killedAt: string | undefined;
        const off = proxy.onRequest((r) => {
          if (killedAt === undefined && proxy.requests.length - from >= k) {
            killedAt = describeRequest(r);
            child.child.kill('SIGKILL');
          }
        });
        const killed: CliResult = await child.exited;
        off();
        await sleep(150); // requests in flight when it died land (or not)
        const when = `kill at request ${k}/${total} (${killedAt ?? 'never reached: it finished'}), epoch ${previous}→${next}`;
        if (killedAt && killed.signal !== 'SIGKILL') problems.push(`${when}: exited with ${killed.code} before the kill`);

        await checkManifestsWhole(`${when}, after the kill`);
        const after = await newest();
        if (after?.epoch !== previous && after?.epoch !== next) problems.push(`${when}: newest committed epoch is ${after?.epoch}`);
        const pulled = await pullAndCompare(`${when}, after the kill`);

        const restarted = await ship();
        if (restarted.code !== 0) problems.push(`${when}: restart exited ${restarted.code}: ${restarted.stderr}`);
        await checkManifestsWhole(`${when}, after the restart`);
        const final = await newest();
        if (final?.epoch !== next) problems.push(`${when}: after the restart the newest committed epoch is ${final?.epoch}, not ${next}`);
        if ((await pullAndCompare(`${when}, after the restart`)) !== next) problems.push(`${when}: the restart did not make epoch ${next} pullable`);
        const row = await d1Prefix();
        if (row !== final?.prefix) problems.push(`${when}: D1 row points at ${row}, the newest commit is ${final?.prefix}`);
        const outcome = pulled === previous ? 'previous intact' : pulled === next ? 'new already committed' : 'BROKEN';
        outcomes.push(`${k}:${killedAt ?? '-'}:${outcome}`);
        tally('kill', 'SIGKILL during a ship, then restart', final?.epoch === next && pulled !== undefined ? 'committed' : 'lost', { k, at: killedAt, afterKill: outcome });
      }

      // One more clean ship: superseded versions and the debris of killed attempts are swept.
      await writeEpoch();
      expect((await ship()).code).toBe(0);
    } finally {
      stop = true;
      await puller;
    }
    const last = (await newest())!;
    expect(last.epoch).toBe(epoch);
    expect((await listKeys(`jobs/${job}/ck/`)).sort()).toEqual([`jobs/${job}/ck/${last.version}.manifest.json`, ...last.files.map((f) => `${last.prefix}${f.path}`)].sort());
    expect(await d1Prefix()).toBe(last.prefix);
    tally('kill', 'concurrent puller during the kill loop', seen.mixed === 0 && seen.errors.length === 0 ? 'committed' : 'corrupted', {
      pulls: seen.pulls,
      epochs: seen.epochs.size,
      mixed: seen.mixed,
      errors: seen.errors.length,
      openMultipartUploads: proxy.openMultipartUploads().length,
      sequence,
    });

    expect({ problems, outcomes: outcomes.filter((o) => o.endsWith('BROKEN')) }).toEqual({ problems: [], outcomes: [] });
    expect(seen.pulls).toBeGreaterThan(points.length);
    expect(seen.mixed).toBe(0);
    expect(seen.errors).toEqual([]);
    expect(seen.epochs.size).toBeGreaterThan(1);
    // Each ship makes about 15 requests (listing, manifest read, D1, 3 files + 2 parts, commit, D1 row, cleanup).
    expect(total).toBeGreaterThanOrEqual(10);
  }, 150_000);
});
