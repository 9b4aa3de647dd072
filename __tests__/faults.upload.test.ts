/**
 * Uploads through the fault proxy: connection resets in the middle of a part, bursts of 500 / 503
 * SlowDown / 429, responses cut short, stalls, connections refused for a while, and bad credentials.
 * Every run ships one checkpoint with a multipart file (parts of 5 MiB and 512 KiB) and small files, then checks
 * that it is committed and byte-identical (SHA-256 of every object read straight from the bucket), that
 * no multipart upload was left open, and that the retries stopped.
 *
 * The courier runs in-process with small retry delays (S3 maxAttempts 3, courier backoff 100-800 ms),
 * R2-only (D1 faults are in faults.outage.test.ts).
 */
import { afterAll, describe, expect, it } from '@jest/globals';
import { join } from 'node:path';
import {
  Courier,
  loadConfig,
  openBackends,
  silentLogger,
  type Backends,
  type CourierTuning,
  type Logger,
  type S3Tuning,
} from '../src/index.js';
import {
  getObject,
  hashDir,
  listKeys,
  listTree,
  manifestsOf,
  r2OnlyEnv,
  randomFile,
  sha256,
  sleep,
  versionFolders,
  waitFor,
  writeCheckpoint,
} from './helpers/checkpoints.js';
import { FaultProxy, ShipDriver, on, tally, viaProxies, type FaultRule, type RunOutcome, type SeenRequest, faultScope } from './helpers/faultProxy.js';
import { rig, uniqueJobId } from './rig/rig.js';
import { cliEnv, runCli } from './helpers/cli.js';

const MiB = 1024 * 1024;
const S3_TUNING: Partial<S3Tuning> = { partSize: 5 * MiB, partsInFlight: 2, maxAttempts: 3 };
const COURIER_TUNING: Partial<CourierTuning> = { retryBaseMs: 100, retryMaxMs: 800, shipAttempts: 5, bigFileBytes: 5 * MiB };

const { cleanups, tempDir, startProxy } = faultScope('r2d1-faults-');

function backendsVia(proxy: FaultProxy, s3: Partial<S3Tuning> = S3_TUNING, env: Record<string, string | undefined> = {}): Backends {
  return openBackends(loadConfig({ ...r2OnlyEnv(), ...viaProxies(proxy), ...env }), silentLogger, s3);
}

function courierOn(backends: Backends, logger: Logger = silentLogger, tuning: Partial<CourierTuning> = COURIER_TUNING): Courier {
  const courier = new Courier(backends, { logger, tuning });
  cleanups.push(() => courier.close());
  return courier;
}

/** The checkpoint every run ships: a 2-part multipart file (5 MiB + 512 KiB) and two small ones. */
async function writeRunCheckpoint(dir: string, epoch = 1): Promise<void> {
  await writeCheckpoint(dir, 'ck', {
    epoch,
    files: { 'model.bin': randomFile(5 * MiB + 512 * 1024), 'small.bin': randomFile(64 * 1024), 'config.json': '{"lr":0.001}' },
  });
}

/**
 * committed: the slot's one manifest lists exactly the files on disk, and every object in the bucket has
 * the bytes the manifest says (SHA-256, read straight from the rig). lost: nothing committed.
 * corrupted: committed, but some object or manifest entry differs from the disk.
 */
async function judge(job: string, dir: string, name = 'ck'): Promise<RunOutcome> {
  const manifests = await manifestsOf(job, name);
  if (manifests.length === 0) return 'lost';
  const local = await hashDir(join(dir, name));
  const manifest = manifests[0]!.manifest;
  const listed = Object.fromEntries(manifest.files.map((f) => [f.path, { size: f.size, sha256: f.sha256 }]));
  if (JSON.stringify(listed) !== JSON.stringify(local)) return 'corrupted';
  for (const f of manifest.files) {
    const body = await getObject(`${manifest.prefix}${f.path}`);
    if (body.length !== f.size || sha256(body) !== f.sha256) return 'corrupted';
  }
  return 'committed';
}

/**
 * Waits (up to 5 s) until background aborts of failed multipart uploads are done, then watches 200 ms for requests
 * that should not come. Returns the multipart uploads left open and the late requests, among the
 * requests from index `from` on.
 */
async function settle(proxy: FaultProxy, from: number): Promise<{ open: string[]; late: string[] }> {
  await waitFor('every multipart upload to be completed or aborted', () => proxy.openMultipartUploads(from).length === 0 && proxy.inFlight().length === 0, 5000, 20).catch(
    () => undefined,
  );
  const before = proxy.requests.length;
  await sleep(200);
  return { open: proxy.openMultipartUploads(from), late: proxy.requests.slice(before).map((r) => `${r.method} ${r.url}`) };
}

async function expectQuiet(proxy: FaultProxy, from = 0): Promise<void> {
  expect(await settle(proxy, from)).toEqual({ open: [], late: [] });
}

const part = (n: number) => (r: SeenRequest) => r.op === 'UploadPart' && r.partNumber === n;
const keyEnds = (suffix: string) => (r: SeenRequest) => r.key?.endsWith(suffix) === true;

interface FaultCase {
  name: string;
  rules?: FaultRule[];
  /** Arms something on the proxy for the run (e.g. refusing connections at the first part). */
  arm?: (proxy: FaultProxy) => () => void;
  runs: number;
}

/** Runs per fault: 2 by default (bounded time); R2D1_FAULT_RUNS=10 for the README's counts. */
const RUNS = Number(process.env.R2D1_FAULT_RUNS ?? 2);

const CASES: FaultCase[] = [
  { name: 'connection reset in the middle of part 2 (once)', runs: RUNS, rules: [{ match: part(2), fault: 'reset-mid-body', times: 1 }] },
  {
    name: 'connection reset in the middle of part 2, 4 times (beyond the SDK attempts: a new multipart upload)',
    runs: RUNS,
    rules: [{ match: part(2), fault: 'reset-mid-body', times: 4 }],
  },
  { name: 'connection reset in the middle of a single-part PUT, twice', runs: RUNS, rules: [{ match: keyEnds('/small.bin'), fault: 'reset-mid-body', times: 2 }] },
  { name: 'connection reset on CreateMultipartUpload', runs: RUNS, rules: [{ match: on('CreateMultipartUpload'), fault: 'reset', times: 2 }] },
  { name: 'burst of 500 InternalError on every write', runs: RUNS, rules: [{ match: on('PutObject', 'CreateMultipartUpload', 'UploadPart', 'CompleteMultipartUpload'), fault: 'status', status: 500, code: 'InternalError', times: 4 }] },
  { name: 'burst of 503 SlowDown on parts', runs: RUNS, rules: [{ match: on('UploadPart'), fault: 'status', status: 503, code: 'SlowDown', times: 3 }] },
  { name: 'burst of 429 on single PUTs and CreateMultipartUpload', runs: RUNS, rules: [{ match: on('PutObject', 'CreateMultipartUpload'), fault: 'status', status: 429, code: 'TooManyRequests', times: 4 }] },
  { name: 'burst of 503 on the manifest PUT (the commit)', runs: RUNS, rules: [{ match: keyEnds('.manifest.json'), fault: 'status', status: 503, code: 'ServiceUnavailable', times: 3 }] },
  { name: 'burst of 503 on listings and deletes (remote check, cleanup)', runs: RUNS, rules: [{ match: on('ListObjectsV2', 'DeleteObjects'), fault: 'status', status: 503, code: 'SlowDown', times: 3 }] },
  { name: 'response lost after an UploadPart took effect (truncated to nothing)', runs: RUNS, rules: [{ match: on('UploadPart'), fault: 'truncate', times: 2 }] },
  { name: 'listing response truncated halfway', runs: RUNS, rules: [{ match: on('ListObjectsV2'), fault: 'truncate', times: 2 }] },
  { name: 'response to CompleteMultipartUpload truncated (it took effect upstream)', runs: RUNS, rules: [{ match: on('CompleteMultipartUpload'), fault: 'truncate', times: 1 }] },
  { name: 'stall of 1.5 s, then the connection reset', runs: RUNS, rules: [{ match: part(1), fault: 'stall', ms: 1500, then: 'reset', times: 1 }] },
  {
    name: 'connections refused for 1 s from the first part on',
    runs: RUNS,
    arm: (proxy) => {
      let fired = false;
      return proxy.onRequest((r) => {
        if (!fired && r.op === 'UploadPart') {
          fired = true;
          void proxy.refuseFor(1000);
        }
      });
    },
  },
];

describe('uploads under each fault: committed, byte-identical, no multipart upload left open, retries stop', () => {
  // One proxy and one child courier for the whole matrix; the proxy is re-armed before every run.
  let shared: { proxy: FaultProxy; driver: ShipDriver } | undefined;
  afterAll(async () => {
    shared?.driver.close();
    await shared?.proxy.close();
  });
  async function sharedDriver() {
    if (!shared) {
      const proxy = await FaultProxy.start(rig().url);
      const driver = new ShipDriver({ env: { ...r2OnlyEnv(), ...viaProxies(proxy) }, s3: S3_TUNING, courier: COURIER_TUNING as Record<string, unknown>, timeout: 20 });
      shared = { proxy, driver };
    }
    return shared;
  }

  /** Ships `runs` fresh jobs one after the other in the child courier, calling `arm` before each. */
  async function shipRuns(runs: number, arm: (proxy: FaultProxy) => void, target?: { proxy: FaultProxy; driver: ShipDriver }) {
    const { proxy, driver } = target ?? (await sharedDriver());
    const results = [];
    for (let run = 0; run < runs; run++) {
      const job = uniqueJobId('fault');
      const dir = await tempDir();
      await writeRunCheckpoint(dir);
      arm(proxy);
      const before = proxy.requests.length;
      const result = await driver.run({ dir, job });
      const applied = proxy.applied().reduce((a, b) => a + b, 0);
      const quiet = await settle(proxy, before);
      results.push({ job, dir, result, requests: proxy.requests.slice(before), applied, quiet });
      proxy.clear();
    }
    return results;
  }

  it.each(CASES.map((c) => [c.name, c] as const))('%s', async (_name, c) => {
    let disarm: (() => void) | undefined;
    const results = await shipRuns(c.runs, (proxy) => {
      disarm?.();
      proxy.plan(c.rules ?? []);
      disarm = c.arm?.(proxy);
    });
    disarm?.();
    // Every run is judged and counted first (for the README's table), then checked.
    const outcomes: RunOutcome[] = [];
    for (const { job, dir, result, requests, applied, quiet } of results) {
      const outcome = await judge(job, dir);
      outcomes.push(outcome);
      tally('upload', c.name, outcome, { seconds: result.seconds, requests: requests.length, faults: applied, openMultipartUploads: quiet.open.length });
    }
    for (const [i, { job, result, requests, applied, quiet }] of results.entries()) {
      const context = `${c.name}: ${JSON.stringify(result.report.failed)}\n${result.logs.join('\n')}`;
      expect([context, result.report.ok]).toEqual([context, true]);
      expect(outcomes[i]).toBe('committed');
      // The fault really happened.
      expect(applied + requests.filter((r) => r.outcome === 'reset').length).toBeGreaterThan(0);
      // A guard against a hang, not a speed claim: the SDK's throttling backoff on 503 SlowDown plus a
      // re-upload of the version took 22 s once on a loaded machine.
      expect(result.seconds).toBeLessThan(60);
      // Every multipart upload completed or aborted; no request after the ship returned.
      expect(quiet).toEqual({ open: [], late: [] });
      // Attempts that failed left nothing behind: only the committed version's folder remains.
      const committed = (await manifestsOf(job, 'ck'))[0]!.manifest.version;
      expect(await versionFolders(job, 'ck')).toEqual([committed]);
    }
    expect(outcomes.filter((o) => o !== 'committed')).toEqual([]);
  });

  it('a stall longer than the request timeout is abandoned by the client and retried (needs S3Tuning.socketTimeoutMs)', async () => {
    // Part 2 gets no answer for 6 s; then the proxy would forward it. With a 1 s socket timeout the
    // client gives up on it long before and retries.
    const proxy = await startProxy();
    const s3 = { ...S3_TUNING, socketTimeoutMs: 1000 }; // the proposed knob (see the report); default 120 s
    const driver = new ShipDriver({ env: { ...r2OnlyEnv(), ...viaProxies(proxy) }, s3, courier: COURIER_TUNING as Record<string, unknown>, timeout: 20 });
    cleanups.push(() => driver.close());
    const [{ job, dir, result, quiet }] = await shipRuns(1, () => proxy.plan([{ match: part(2), fault: 'stall', ms: 6000, times: 1 }]), { proxy, driver });
    const outcome = await judge(job, dir);
    tally('upload', 'stall longer than the request timeout (6 s, timeout 1 s)', outcome, { seconds: result.seconds });
    expect(result.report.ok).toBe(true);
    expect(outcome).toBe('committed');
    const stalled = proxy.requests.find((r) => r.fault === 'stall')!;
    expect(stalled.clientGaveUp).toBe(true);
    expect(result.seconds).toBeLessThan(5);
    expect(quiet).toEqual({ open: [], late: [] });
  });

  it('a part that keeps failing (503 SlowDown forever): bounded attempts with growing delays, every multipart upload aborted, then nothing more', async () => {
    const proxy = await startProxy();
    proxy.plan([{ match: part(2), fault: 'status', status: 503, code: 'SlowDown' }]);
    const job = uniqueJobId('storm');
    const dir = await tempDir();
    await writeRunCheckpoint(dir);
    const tuning = { ...COURIER_TUNING, shipAttempts: 3, retryBaseMs: 200, retryMaxMs: 2000 };
    const started = Date.now();
    const report = await courierOn(backendsVia(proxy), silentLogger, tuning).ship(dir, { jobId: job, timeout: 30 });
    const seconds = (Date.now() - started) / 1000;
    tally('upload', 'part failing forever (503 SlowDown)', report.ok ? 'committed' : 'lost', { seconds });

    expect(report.ok).toBe(false);
    expect(report.failed).toEqual([{ name: 'ck', epoch: 1, reason: expect.stringMatching(/SlowDown.*HTTP 503|HTTP 503.*SlowDown/) }]);
    expect(report.failed[0]!.reason).not.toMatch(/timed out/);
    expect(await manifestsOf(job, 'ck')).toEqual([]);
    // One multipart upload per courier attempt, each aborted; the SDK tried part 2 at most maxAttempts times in each.
    const creates = proxy.seen('CreateMultipartUpload');
    expect(creates).toHaveLength(3);
    for (const r of proxy.requests.filter((q) => q.createdUploadId)) {
      const tries = proxy.seen('UploadPart').filter((p) => p.uploadId === r.createdUploadId && p.partNumber === 2);
      expect(tries.length).toBeGreaterThanOrEqual(1);
      expect(tries.length).toBeLessThanOrEqual(S3_TUNING.maxAttempts!);
    }
    // The courier backs off between attempts: full-jitter delays of at least half of 200 ms × 2^k.
    const gaps = creates.slice(1).map((c, i) => c.startedAt - creates[i]!.startedAt);
    expect(gaps[0]).toBeGreaterThanOrEqual(100);
    expect(gaps[1]).toBeGreaterThanOrEqual(200);
    expect(seconds).toBeLessThan(20);
    await expectQuiet(proxy);
    expect(proxy.seen('AbortMultipartUpload').every((r) => r.upstreamStatus === 204 || r.upstreamStatus === 200)).toBe(true);
    // Nothing of the failed attempts is left in the bucket.
    expect(await listKeys(`jobs/${job}/`)).toEqual([]);
  });

  it('while watching, a checkpoint that keeps failing is retried at the poll interval, not in a storm', async () => {
    const proxy = await startProxy();
    proxy.plan([{ match: on('CreateMultipartUpload'), fault: 'status', status: 503, code: 'SlowDown' }]);
    const job = uniqueJobId('pollretry');
    const dir = await tempDir();
    const courier = courierOn(backendsVia(proxy, { ...S3_TUNING, maxAttempts: 1 }), silentLogger, { ...COURIER_TUNING, shipAttempts: 2, retryBaseMs: 20, retryMaxMs: 40 });
    await courier.watch(dir, { jobId: job, pollEvery: 0.5 });
    await writeRunCheckpoint(dir);
    await sleep(2500);
    // 2 quick attempts, then one per poll (0.5 s): about 6 in 2.5 s, far from a storm.
    const attempts = proxy.seen('CreateMultipartUpload').length;
    expect(attempts).toBeGreaterThanOrEqual(4);
    expect(attempts).toBeLessThanOrEqual(9);
    // R2 heals: the next poll ships it.
    proxy.clear();
    await waitFor('the checkpoint to be committed once R2 heals', async () => (await manifestsOf(job, 'ck')).length === 1, 5000, 100);
    const report = await courier.flush({ timeout: 10 });
    expect(report.ok).toBe(true);
    expect(await judge(job, dir)).toBe('committed');
    await expectQuiet(proxy);
  });
});

describe('a superseded upload', () => {
  it('a slot rewritten while its multipart upload is in flight: that upload is aborted at the server, the newer version commits', async () => {
    const proxy = await startProxy();
    proxy.plan([{ match: part(2), fault: 'delay', ms: 3000, times: 1 }]);
    const job = uniqueJobId('supersede');
    const dir = await tempDir();
    const courier = courierOn(backendsVia(proxy));
    await courier.watch(dir, { jobId: job, pollEvery: 30 });
    const t0 = Math.floor(Date.now() / 1000);
    await writeCheckpoint(dir, 'ck', { epoch: 1, timestamp: t0, files: { 'model.bin': randomFile(12 * MiB) } });
    await waitFor('part 2 of epoch 1 to be held at the proxy', () => proxy.requests.some((r) => r.fault === 'delay'), 10_000, 20);
    await writeCheckpoint(dir, 'ck', { epoch: 2, timestamp: t0 + 1, files: { 'model.bin': randomFile(12 * MiB) } });

    const report = await courier.flush({ timeout: 30 });
    expect(report.shipped.map((s) => [s.name, s.epoch])).toEqual([['ck', 2]]);
    expect((await manifestsOf(job, 'ck')).map((m) => m.manifest.epoch)).toEqual([2]);
    expect(await judge(job, dir)).toBe('committed');
    // The epoch-1 upload was aborted, not left open (R2 bills stored parts until a lifecycle rule clears them).
    expect(proxy.counts().AbortMultipartUpload).toBeGreaterThanOrEqual(1);
    expect((await settle(proxy, 0)).open).toEqual([]);
  });
});

describe('downloads under faults (the CLI)', () => {
  it('r2d1 pull through resets, truncated responses and 503s lands byte-identical files, or nothing', async () => {
    const job = uniqueJobId('pullfault');
    const dir = await tempDir();
    await writeRunCheckpoint(dir);
    const clean = await startProxy();
    expect((await courierOn(backendsVia(clean)).ship(dir, { jobId: job, timeout: 20 })).ok).toBe(true);

    const cases: [string, FaultRule[]][] = [
      ['GetObject truncated halfway (3 times)', [{ match: on('GetObject'), fault: 'truncate', times: 3 }]],
      ['GetObject connection reset (3 times)', [{ match: on('GetObject'), fault: 'reset', times: 3 }]],
      ['GetObject 503 SlowDown (3 times)', [{ match: on('GetObject'), fault: 'status', status: 503, code: 'SlowDown', times: 3 }]],
      ['manifest read truncated', [{ match: keyEnds('.manifest.json'), fault: 'truncate', times: 1 }]],
      ['listing truncated', [{ match: on('ListObjectsV2'), fault: 'truncate', times: 1 }]],
    ];
    const outcomes: unknown[] = [];
    for (const [name, rules] of cases) {
      const proxy = await startProxy();
      proxy.plan(rules);
      const cwd = await tempDir('r2d1-dest-');
      const result = await runCli(['pull', `r2://jobs/${job}/latest`, '--dest', 'out', '--json'], {
        env: cliEnv({ ...r2OnlyEnv(), ...viaProxies(proxy) }),
        cwd,
        timeoutMs: 30_000,
      });
      const landed = await hashDir(join(cwd, 'out', 'ck')).catch(() => undefined);
      const identical = result.code === 0 && JSON.stringify(landed) === JSON.stringify(await hashDir(join(dir, 'ck')));
      tally('download', name, identical ? 'committed' : landed ? 'corrupted' : 'lost');
      // Pulled intact; or, failing, nothing half-written: no folder, no temp files.
      const leftovers = (await listTree(join(cwd, 'out'))).filter((e) => /tmp|old-/.test(e) || (!identical && e.startsWith('ck')));
      outcomes.push([name, result.code === 0 ? 'pulled' : result.stderr.split('\n').filter((l) => l.startsWith('r2d1:')), identical, leftovers, proxy.applied()[0]! > 0]);
    }
    expect(outcomes).toEqual(cases.map(([name]) => [name, 'pulled', true, [], true]));
  });

  it('a download cut short resumes from the byte it reached, not from the start', async () => {
    const job = uniqueJobId('pullresume');
    const dir = await tempDir();
    await writeCheckpoint(dir, 'ck', { epoch: 1, files: { 'model.bin': randomFile(20 * MiB + 123), 'config.json': '{}' } });
    expect((await courierOn(backendsVia(await startProxy())).ship(dir, { jobId: job, timeout: 30 })).ok).toBe(true);

    const proxy = await startProxy();
    proxy.plan([{ match: keyEnds('model.bin'), fault: 'truncate', times: 2 }]);
    const cwd = await tempDir('r2d1-dest-');
    const result = await runCli(['pull', `r2://jobs/${job}/latest`, '--dest', 'out'], { env: cliEnv({ ...r2OnlyEnv(), ...viaProxies(proxy) }), cwd, timeoutMs: 60_000 });
    expect([result.code, result.stderr]).toEqual([0, expect.stringContaining('2 files verified')]);
    expect(await hashDir(join(cwd, 'out', 'ck'))).toEqual(await hashDir(join(dir, 'ck')));
    const ranges = proxy.requests.filter((r) => r.op === 'GetObject' && r.key?.endsWith('model.bin')).map((r) => r.range);
    // Asked whole, then each of the two cut answers resumed further on, up to the last byte.
    const starts = ranges.slice(1).map((range) => Number(/^bytes=(\d+)-(\d+)$/.exec(range ?? '')?.[1]));
    expect(ranges).toHaveLength(3);
    expect(ranges[0]).toBeUndefined();
    expect(starts[0]).toBeGreaterThan(0);
    expect(starts[1]).toBeGreaterThan(starts[0]!);
    expect(ranges.slice(1).every((range) => range?.endsWith(`-${20 * MiB + 122}`))).toBe(true);
  });
});

describe('credentials (the CLI)', () => {
  const oneLineErrors = (stderr: string) => stderr.split('\n').filter((l) => l.startsWith('r2d1: '));

  it('a wrong secret (SignatureDoesNotMatch): ship and pull fail at once, no request repeated, the message names the secret', async () => {
    const proxy = await startProxy();
    const job = uniqueJobId('badsecret');
    const cwd = await tempDir();
    await writeRunCheckpoint(join(cwd, 'ckpt'));
    const env = cliEnv({ ...r2OnlyEnv(), ...viaProxies(proxy), R2D1_R2_SECRET_KEY: 'f'.repeat(64) });

    const shipped = await runCli(['ship', 'ckpt', '--job-id', job, '--json'], { env, cwd, timeoutMs: 30_000 });
    expect(shipped.code).toBe(1);
    expect(shipped.ms).toBeLessThan(5000);
    const report = JSON.parse(shipped.stdout);
    expect(report.failed).toEqual([{ name: 'ck', epoch: 1, reason: expect.stringMatching(/SignatureDoesNotMatch \(HTTP 403\).*R2D1_R2_SECRET_KEY/) }]);
    const shipRequests = proxy.requests.map((r) => `${r.method} ${r.url}`);
    expect(new Set(shipRequests).size).toBe(shipRequests.length);
    expect(shipRequests.length).toBeLessThanOrEqual(6);

    const before = proxy.requests.length;
    const pulled = await runCli(['pull', `r2://jobs/${job}/latest`, '--dest', 'out'], { env, cwd, timeoutMs: 30_000 });
    expect(pulled.code).toBe(1);
    expect(pulled.ms).toBeLessThan(5000);
    const lines = oneLineErrors(pulled.stderr);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/SignatureDoesNotMatch \(HTTP 403\)/);
    expect(lines[0]).toMatch(/R2D1_R2_SECRET_KEY/);
    expect(pulled.stderr).not.toMatch(/fresh start/);
    expect(proxy.requests.length - before).toBe(1); // one listing, refused, not retried
  });

  it('an expired session token (400 ExpiredToken, as R2 answers it) fails at once, the message names R2D1_SESSION_TOKEN', async () => {
    const proxy = await startProxy();
    // miniflare refuses every session token; the proxy answers as R2 does for an expired one.
    proxy.plan([{ match: (r) => r.hasSessionToken, fault: 'status', status: 400, code: 'ExpiredToken', message: 'The provided token has expired.' }]);
    const job = uniqueJobId('expired');
    const cwd = await tempDir();
    await writeRunCheckpoint(join(cwd, 'ckpt'));
    const env = cliEnv({ ...r2OnlyEnv(), ...viaProxies(proxy), R2D1_SESSION_TOKEN: 'FwoGZXIvYXdzEXPIRED' });

    const shipped = await runCli(['ship', 'ckpt', '--job-id', job, '--json'], { env, cwd, timeoutMs: 30_000 });
    expect(shipped.code).toBe(1);
    expect(shipped.ms).toBeLessThan(5000);
    expect(JSON.parse(shipped.stdout).failed).toEqual([
      { name: 'ck', epoch: 1, reason: expect.stringMatching(/ExpiredToken \(HTTP 400\): The provided token has expired.*R2D1_SESSION_TOKEN/) },
    ]);
    const shipRequests = proxy.requests.map((r) => `${r.method} ${r.url}`);
    expect(new Set(shipRequests).size).toBe(shipRequests.length);
    expect(shipRequests.length).toBeLessThanOrEqual(6);

    const before = proxy.requests.length;
    const pulled = await runCli(['pull', `r2://jobs/${job}/latest`, '--dest', 'out'], { env, cwd, timeoutMs: 30_000 });
    expect(pulled.code).toBe(1);
    const lines = oneLineErrors(pulled.stderr);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/ExpiredToken/);
    expect(lines[0]).toMatch(/R2D1_SESSION_TOKEN/);
    expect(proxy.requests.length - before).toBe(1);
  });
});
