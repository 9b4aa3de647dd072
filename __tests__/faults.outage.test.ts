/**
 * Outages: R2 unreachable for a while (connections refused by the fault proxy) under a watching CLI
 * courier, a flush whose timeout is shorter than the outage, and D1 unreachable or failing while
 * checkpoints ship. R2 outages run against the real CLI (network errors must come from a plain Node
 * process, see ShipDriver in helpers/faultProxy.ts); D1 errors are wrapped by D1Client whatever their
 * realm, so the D1 tests run in-process with short retry delays.
 */
import { describe, expect, it } from '@jest/globals';
import { join } from 'node:path';
import { Courier, D1Client, Fetcher, silentLogger, type Backends } from '../src/index.js';
import {
  capturingLogger,
  getObject,
  hashDir,
  hookedCore,
  manifestsOf,
  openCore,
  randomFile,
  sha256,
  sleep,
  waitFor,
  writeCheckpoint,
} from './helpers/checkpoints.js';
import { cliEnv, runCli, startCli, type CliResult } from './helpers/cli.js';
import { FaultProxy, on, tally, viaProxies, faultScope } from './helpers/faultProxy.js';
import { d1Query, rig, rigEnv, uniqueJobId } from './rig/rig.js';

const { cleanups, tempDir, startProxy } = faultScope('r2d1-outage-');

const committedEpoch = async (job: string, name: string) => (await manifestsOf(job, name))[0]?.manifest.epoch;

/** Every object of the slot's newest manifest has the bytes of the local folder. */
async function identical(job: string, dir: string, name: string): Promise<boolean> {
  const manifest = (await manifestsOf(job, name))[0]?.manifest;
  if (!manifest) return false;
  const local = await hashDir(join(dir, name));
  if (manifest.files.length !== Object.keys(local).length) return false;
  for (const f of manifest.files) {
    if (local[f.path]?.sha256 !== f.sha256 || sha256(await getObject(`${manifest.prefix}${f.path}`)) !== f.sha256) return false;
  }
  return true;
}

const files = () => ({ 'model.bin': randomFile(300_000), 'config.json': '{"lr":0.1}' });

function reportOf(result: CliResult) {
  try {
    return JSON.parse(result.stdout) as { ok: boolean; shipped: { name: string; epoch: number }[]; failed: { name: string; epoch?: number; reason: string }[]; d1Pending: string[] };
  } catch {
    throw new Error(`not a JSON report: exit ${result.code}\n${result.stdout}\n${result.stderr}`);
  }
}

const pairs = (list: { name: string; epoch?: number }[]) => list.map((s) => `${s.name}@${s.epoch}`).sort();

describe('R2 unreachable (the CLI courier)', () => {
  it('while watching: the queue is kept (newest epoch per slot), watching goes on, and everything ships when R2 returns', async () => {
    const proxy = await startProxy();
    const job = uniqueJobId('r2down');
    const cwd = await tempDir();
    const dir = join(cwd, 'ckpt');
    const watcher = startCli(['watch', 'ckpt', '--job-id', job, '--poll-every', '1', '--json'], {
      env: cliEnv(rigEnv(viaProxies(proxy))),
      cwd,
      timeoutMs: 60_000,
    });
    await waitFor('watch to start', () => watcher.stderr.includes('watching') || watcher.child.exitCode !== null, 10_000);
    await writeCheckpoint(dir, 'a', { epoch: 1, files: files() });
    await waitFor('a@1 to be committed', async () => (await committedEpoch(job, 'a')) === 1, 10_000, 100);

    // R2 goes away for 6 s. Meanwhile the job writes two new slots and rewrites `a` twice.
    await proxy.refuse();
    const outageStarted = Date.now();
    await writeCheckpoint(dir, 'b', { epoch: 2, files: files() });
    await writeCheckpoint(dir, 'c', { epoch: 3, files: files() });
    await writeCheckpoint(dir, 'a', { epoch: 4, files: files() });
    await sleep(1500);
    await writeCheckpoint(dir, 'a', { epoch: 5, files: files() });
    await sleep(6000 - (Date.now() - outageStarted));
    expect(watcher.child.exitCode).toBeNull(); // still watching
    expect(watcher.stderr).toMatch(/ECONNREFUSED/);
    expect(await committedEpoch(job, 'a')).toBe(1);
    await proxy.accept();
    const back = Date.now();

    // No flush needed: the watching courier ships on its own once R2 answers.
    await waitFor(
      'a@5, b@2 and c@3 to be committed after the outage',
      async () => (await committedEpoch(job, 'a')) === 5 && (await committedEpoch(job, 'b')) === 2 && (await committedEpoch(job, 'c')) === 3,
      20_000,
      200,
    );
    const recovery = (Date.now() - back) / 1000;
    const result = await watcher.stop('SIGTERM', 30_000);
    expect(result.code).toBe(0);
    const report = reportOf(result);
    expect(report.failed).toEqual([]);
    // a@4 was superseded before it could ship: never committed.
    expect(pairs(report.shipped)).toEqual(['a@1', 'a@5', 'b@2', 'c@3']);
    expect(proxy.requests.filter((r) => r.op === 'PutObject' && /\/a\/e4-.*\.manifest\.json$/.test(r.key ?? ''))).toEqual([]);
    for (const name of ['a', 'b', 'c']) {
      const ok = await identical(job, dir, name);
      tally('outage', 'R2 refusing connections for 6 s while watching', ok ? 'committed' : 'lost', { name, recovery });
      expect([name, ok]).toEqual([name, true]);
    }
    expect(recovery).toBeLessThan(15);
  });

  it('a flush whose timeout is shorter than the outage reports exactly what is unshipped and exits 1; a later ship completes it', async () => {
    const proxy = await startProxy();
    const job = uniqueJobId('flushdown');
    const cwd = await tempDir();
    const dir = join(cwd, 'ckpt');
    const env = cliEnv(rigEnv(viaProxies(proxy)));
    const watcher = startCli(['watch', 'ckpt', '--job-id', job, '--poll-every', '1', '--timeout', '2', '--json'], { env, cwd, timeoutMs: 60_000 });
    await waitFor('watch to start', () => watcher.stderr.includes('watching') || watcher.child.exitCode !== null, 10_000);
    await writeCheckpoint(dir, 'x', { epoch: 1, files: files() });
    await waitFor('x@1 to be committed', async () => (await committedEpoch(job, 'x')) === 1, 10_000, 100);

    await proxy.refuse();
    await writeCheckpoint(dir, 'y', { epoch: 2, files: files() });
    await writeCheckpoint(dir, 'x', { epoch: 3, files: files() });
    await sleep(1000);
    await writeCheckpoint(dir, 'z', { epoch: 4, files: files() }); // written just before the signal
    const stopped = Date.now();
    const result = await watcher.stop('SIGTERM', 30_000);
    const flushSeconds = (Date.now() - stopped) / 1000;
    expect(result.code).toBe(1);
    const report = reportOf(result);
    expect(report.ok).toBe(false);
    expect(pairs(report.shipped)).toEqual(['x@1']);
    expect(pairs(report.failed)).toEqual(['x@3', 'y@2', 'z@4']);
    for (const f of report.failed) expect(f.reason).toMatch(/timed out after 2s|ECONNREFUSED/);
    expect(report.d1Pending).toEqual([]);
    // Bounded by the timeout (2 s) plus the D1 grace and process exit.
    expect(flushSeconds).toBeLessThan(2 + 6);
    // The human lines name every unshipped checkpoint too.
    for (const name of ['x', 'y', 'z']) tally('outage', 'flush (timeout 2 s) during an R2 outage', 'lost', { name });

    // R2 is back: a one-shot ship completes exactly what was reported, and re-uploads nothing else.
    await proxy.accept();
    const shipped = await runCli(['ship', 'ckpt', '--job-id', job, '--json'], { env, cwd, timeoutMs: 30_000 });
    expect(shipped.code).toBe(0);
    expect(pairs(reportOf(shipped).shipped)).toEqual(['x@3', 'y@2', 'z@4']);
    for (const name of ['x', 'y', 'z']) expect([name, await identical(job, dir, name)]).toEqual([name, true]);
  });
});

describe('D1 unreachable', () => {
  const d1Settings = (proxy: FaultProxy) => ({ apiUrl: proxy.d1ApiUrl, accountId: rig().accountId, databaseId: rig().databaseId, apiToken: rig().apiToken });
  /** A D1 client through the proxy with short retries and timeouts. */
  const d1Via = (proxy: FaultProxy, timeoutMs = 1000) =>
    new D1Client(d1Settings(proxy), { retry: { attempts: 2, baseDelayMs: 20, maxDelayMs: 50 }, timeoutMs });
  const rowsOf = (job: string) =>
    d1Query<{ name: string; epoch: number; r2_prefix: string }>('SELECT name, epoch, r2_prefix FROM checkpoints WHERE job_id = ? ORDER BY name', [job]);

  function courierWith(backends: Backends, logger = silentLogger): Courier {
    const courier = new Courier(backends, { logger, tuning: { retryBaseMs: 50, retryMaxMs: 300 } });
    cleanups.push(() => courier.close());
    return courier;
  }

  it('shipping to R2 goes on, latest resolves through R2, and the rows are written (newest per slot) when D1 returns', async () => {
    const d1Proxy = await startProxy();
    await d1Proxy.refuse();
    const job = uniqueJobId('d1down');
    const dir = await tempDir();
    const store = openCore(rigEnv()).store;
    const logger = capturingLogger();
    const courier = courierWith({ store, d1: d1Via(d1Proxy) }, logger);
    await courier.watch(dir, { jobId: job, pollEvery: 0.5 });

    await writeCheckpoint(dir, 'a', { epoch: 1, files: files() });
    await writeCheckpoint(dir, 'b', { epoch: 2, files: files() });
    await waitFor('a@1 and b@2 to be committed while D1 is down', async () => (await committedEpoch(job, 'a')) === 1 && (await committedEpoch(job, 'b')) === 2, 8000, 100);
    expect(await rowsOf(job)).toEqual([]);
    // The row is queued after the commit: its first failed attempt may be logged a moment later.
    await waitFor('the D1 failure to be reported', async () => logger.warnings().some((w) => /D1 row for [ab] not written yet/.test(w)), 8000, 50);

    // latest, with D1 down: through the bucket listing (in-process, and with the CLI's default D1 retries).
    const fetcher = new Fetcher({ store: openCore(rigEnv()).store, d1: d1Via(d1Proxy) }, { logger: silentLogger });
    cleanups.push(() => fetcher.close());
    const dest = await tempDir('r2d1-dest-');
    expect(await fetcher.pull(`r2://jobs/${job}/latest`, { dest })).toMatchObject({ found: true, name: 'b', epoch: 2 });
    expect(await hashDir(join(dest, 'b'))).toEqual(await hashDir(join(dir, 'b')));
    const cwd = await tempDir();
    const cli = await runCli(['pull', `r2://jobs/${job}/latest`, '--dest', 'out', '--json'], { env: cliEnv(rigEnv(viaProxies(undefined, d1Proxy))), cwd, timeoutMs: 30_000 });
    expect(cli.code).toBe(0);
    expect(JSON.parse(cli.stdout)).toMatchObject({ found: true, name: 'b', epoch: 2 });
    expect(cli.stderr).toMatch(/D1 lookup failed, using the bucket listing/);

    // A newer a while D1 is still down: its row replaces the queued one.
    await writeCheckpoint(dir, 'a', { epoch: 3, files: files() });
    await waitFor('a@3 to be committed', async () => (await committedEpoch(job, 'a')) === 3, 8000, 100);
    await d1Proxy.accept();
    const prefixes = { a: (await manifestsOf(job, 'a'))[0]!.manifest.prefix, b: (await manifestsOf(job, 'b'))[0]!.manifest.prefix };
    await waitFor('the D1 rows once D1 is back', async () => (await rowsOf(job)).length === 2 && (await rowsOf(job))[0]!.epoch === 3, 5000, 100);
    expect(await rowsOf(job)).toEqual([
      { name: 'a', epoch: 3, r2_prefix: prefixes.a },
      { name: 'b', epoch: 2, r2_prefix: prefixes.b },
    ]);
    const report = await courier.flush({ timeout: 10 });
    expect(report).toMatchObject({ ok: true, failed: [], d1Pending: [] });
    tally('outage', 'D1 refusing connections while shipping', 'committed', { rows: 2 });
  });

  it('D1 stalling past its timeout, then answering 503: shipping does not wait for it, the row is written after retries', async () => {
    const d1Proxy = await startProxy();
    d1Proxy.plan([
      { match: on('D1Query'), fault: 'stall', ms: 3000, times: 2 },
      { match: on('D1Query'), fault: 'status', status: 503, times: 3 },
    ]);
    const job = uniqueJobId('d1slow');
    const dir = await tempDir();
    const courier = courierWith({ store: openCore(rigEnv()).store, d1: d1Via(d1Proxy, 500) });
    await courier.watch(dir, { jobId: job, pollEvery: 0.5 });
    const started = Date.now();
    await writeCheckpoint(dir, 'a', { epoch: 7, files: files() });
    await waitFor('a@7 to be committed', async () => (await committedEpoch(job, 'a')) === 7, 8000, 50);
    const committedAfter = (Date.now() - started) / 1000;
    expect(committedAfter).toBeLessThan(2.5); // not held up by the 3 s stalls
    await waitFor('the D1 row', async () => (await rowsOf(job)).length === 1, 10_000, 100);
    expect((await rowsOf(job))[0]).toMatchObject({ name: 'a', epoch: 7, r2_prefix: (await manifestsOf(job, 'a'))[0]!.manifest.prefix });
    expect(d1Proxy.applied()).toEqual([2, 3]);
    expect(d1Proxy.requests.filter((r) => r.fault === 'stall').every((r) => r.clientGaveUp)).toBe(true);
    expect(await courier.flush({ timeout: 10 })).toMatchObject({ ok: true, d1Pending: [] });
    tally('outage', 'D1 stalling past its timeout, then 503', 'committed');
  });

  it('a flush while D1 is down reports the pending rows (data committed); the next courier writes them without re-uploading', async () => {
    const d1Proxy = await startProxy();
    await d1Proxy.refuse();
    const job = uniqueJobId('d1later');
    const dir = await tempDir();
    await writeCheckpoint(dir, 'a', { epoch: 1, files: files() });
    await writeCheckpoint(dir, 'b', { epoch: 2, files: files() });
    const first = await courierWith({ store: openCore(rigEnv()).store, d1: d1Via(d1Proxy) }).ship(dir, { jobId: job, timeout: 3 });
    expect(first.ok).toBe(true);
    expect(first.d1Pending.sort()).toEqual(['a', 'b']);
    expect(await rowsOf(job)).toEqual([]);

    await d1Proxy.accept();
    const { backends, store } = hookedCore({}, rigEnv(viaProxies(undefined, d1Proxy)));
    const second = await courierWith(backends).ship(dir, { jobId: job, timeout: 10 });
    expect(second).toEqual({ ok: true, shipped: [], failed: [], d1Pending: [] });
    expect(store.puts).toEqual([]);
    expect((await rowsOf(job)).map((r) => [r.name, r.epoch])).toEqual([
      ['a', 1],
      ['b', 2],
    ]);
  });
});
