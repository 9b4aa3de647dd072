/**
 * Load: a job that writes checkpoints faster than they can be shipped. `r2d1 watch` runs as a child
 * behind the fault proxy, which delays every upload request (a slow link); the "training job" rewrites
 * one slot with a new epoch (a 12 MiB multipart file and small files) every 120 ms, the way a loop
 * saving to slot_0 does, then stops and the courier is flushed.
 *
 * Checked: the newest epoch always wins (commits only move forward, the last epoch is the one
 * committed, by the final flush if need be); memory stays bounded (the courier's resident size,
 * sampled from /proc, does not grow with the number of checkpoints written); nothing is left behind in
 * the bucket but the committed version.
 */
import { describe, expect, it } from '@jest/globals';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { getObject, hashDir, listKeys, manifestsOf, randomFile, sha256, sleep, waitFor, writeCheckpoint } from './helpers/checkpoints.js';
import { cliEnv, startCli } from './helpers/cli.js';
import { faultScope, on, tally, viaProxies } from './helpers/faultProxy.js';
import { rigEnv, uniqueJobId } from './rig/rig.js';

const MiB = 1024 * 1024;
const { tempDir, startProxy } = faultScope('r2d1-load-');

async function rssMiB(pid: number): Promise<number | undefined> {
  try {
    const status = await readFile(`/proc/${pid}/status`, 'utf8');
    const kb = /VmRSS:\s+(\d+) kB/.exec(status)?.[1];
    return kb ? Number(kb) / 1024 : undefined;
  } catch {
    return undefined;
  }
}

describe('a job writing checkpoints faster than they ship', () => {
  it('the newest epoch wins, memory stays bounded, and the final flush ships the last one', async () => {
    const proxy = await startProxy();
    // A slow link: every upload request waits 250 ms before it is forwarded.
    proxy.plan([{ match: on('PutObject', 'CreateMultipartUpload', 'UploadPart', 'CompleteMultipartUpload'), fault: 'delay', ms: 250 }]);
    const job = uniqueJobId('load');
    const cwd = await tempDir();
    const dir = join(cwd, 'ckpt');
    const watcher = startCli(['watch', 'ckpt', '--job-id', job, '--poll-every', '1', '--json'], {
      env: cliEnv(rigEnv(viaProxies(proxy))),
      cwd,
      timeoutMs: 90_000,
    });
    await waitFor('watch to start', () => watcher.stderr.includes('watching') || watcher.child.exitCode !== null, 10_000);
    const pid = watcher.child.pid!;

    const samples: { at: number; written: number; rss: number }[] = [];
    let written = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const rss = await rssMiB(pid);
        if (rss !== undefined) samples.push({ at: Date.now(), written, rss });
        await sleep(50);
      }
    })();

    // The job: a new epoch of slot_0 every 120 ms for 5 s.
    const started = Date.now();
    let last = 0;
    while (Date.now() - started < 5000) {
      last++;
      await writeCheckpoint(dir, 'slot_0', { epoch: last, files: { 'model.bin': randomFile(12 * MiB), 'optim.bin': randomFile(500_000), 'meta.json': JSON.stringify({ epoch: last }) } });
      written = last;
      await sleep(120);
    }
    const lastFiles = await hashDir(join(dir, 'slot_0'));
    const result = await watcher.stop('SIGTERM', 60_000);
    sampling = false;
    await sampler;

    expect(result.code).toBe(0);
    const report = JSON.parse(result.stdout) as { ok: boolean; shipped: { name: string; epoch: number }[]; failed: unknown[] };
    expect(report.failed).toEqual([]);
    expect(report.ok).toBe(true);
    // Commits only move forward, and the last epoch written is the one committed.
    const shippedEpochs = report.shipped.map((s) => s.epoch);
    expect(shippedEpochs).toEqual([...shippedEpochs].sort((a, b) => a - b));
    expect(shippedEpochs.at(-1)).toBe(last);
    const manifestPuts = proxy.requests
      .filter((r) => r.op === 'PutObject' && r.key?.endsWith('.manifest.json') && r.upstreamStatus === 200)
      .map((r) => Number(/\/e(\d+)-t/.exec(r.key!)![1]));
    expect(manifestPuts).toEqual([...manifestPuts].sort((a, b) => a - b));
    const manifests = await manifestsOf(job, 'slot_0');
    expect(manifests.map((m) => m.manifest.epoch)).toEqual([last]);
    const committed = manifests[0]!.manifest;
    expect(Object.fromEntries(committed.files.map((f) => [f.path, { size: f.size, sha256: f.sha256 }]))).toEqual(lastFiles);
    expect(sha256(await getObject(`${committed.prefix}model.bin`))).toBe(lastFiles['model.bin']!.sha256);
    // Nothing but the committed version is left.
    expect((await listKeys(`jobs/${job}/`)).filter((k) => !k.startsWith(committed.prefix) && !k.endsWith(`${committed.version}.manifest.json`))).toEqual([]);

    // Memory: bounded, and not growing with the number of checkpoints written (first vs second half).
    const peak = Math.max(...samples.map((s) => s.rss));
    const half = samples.filter((s) => s.written > 0 && s.written <= last / 2);
    const rest = samples.filter((s) => s.written > last / 2);
    const firstHalfPeak = Math.max(...half.map((s) => s.rss));
    const secondHalfPeak = Math.max(...rest.map((s) => s.rss));
    tally('load', 'a new epoch every 120 ms for 5 s, uploads slowed by 250 ms per request', 'committed', {
      written: last,
      committedWhileWriting: manifestPuts.filter((e) => e < last).length,
      shippedByFlush: report.shipped.length,
      peakRssMiB: Math.round(peak),
      firstHalfPeakMiB: Math.round(firstHalfPeak),
      secondHalfPeakMiB: Math.round(secondHalfPeak),
      multipartUploadsLeftOpen: proxy.openMultipartUploads().length,
    });
    expect(last).toBeGreaterThanOrEqual(15);
    expect(samples.length).toBeGreaterThan(20);
    expect(peak).toBeLessThan(400);
    expect(secondHalfPeak).toBeLessThan(firstHalfPeak + 96);
    // Many epochs were superseded before they could ship: they were dropped, not queued.
    expect(report.shipped.length).toBeLessThan(last / 2);
  });
});
