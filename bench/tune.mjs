#!/usr/bin/env node
/**
 * Tuning sweep for r2d1's transfer defaults, through the library (lib/, built), against a running
 * S3 endpoint given by the usual R2D1_R2_* variables (e.g. radosgw started by ../shared/recipes/radosgw-up.sh,
 * optionally behind bench/proxy.mjs in a shaped network namespace, as bench/run.mjs does).
 *
 *   node bench/tune.mjs ship|pull COURIER_DIR [--reps N] [--grid 'partMiB=8,16;inFlight=4,8;files=8;bigFiles=2'] [--gc CMD]
 *
 * Each shipped version is deleted right after its run; --gc runs CMD (through sh) after each deletion, e.g.
 * "radosgw-admin -c /tmp/r2d1-bench/ceph/ceph.conf gc process --include-all" (radosgw's memstore holds 6 GiB).
 *
 * COURIER_DIR holds slot/ + slot.json (bench/run.mjs generates them under /tmp/r2d1-bench/src/). Each
 * combination runs in its own process under GNU time (wall MiB/s, peak RSS, CPU s/GiB), combinations
 * interleaved round-robin over the repetitions so noise spreads evenly. Prints a table, medians per combination.
 */
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const LIB = path.resolve(HERE, '../lib/index.js');
const MiB = 1024 * 1024;

async function one(spec) {
  // Child: one transfer with the given tuning; prints bytes on stdout.
  const { S3Store, Courier, Fetcher, silentLogger } = await import(LIB);
  const env = process.env;
  const settings = { kind: 'r2', bucket: env.R2D1_R2_BUCKET, endpoint: env.R2D1_R2_ENDPOINT_URL, accessKeyId: env.R2D1_R2_ACCESS_KEY, secretAccessKey: env.R2D1_R2_SECRET_KEY };
  const store = new S3Store(settings, { partSize: spec.partMiB * MiB, partsInFlight: spec.inFlight });
  try {
    if (spec.dir === 'ship') {
      const courier = new Courier({ store }, { logger: silentLogger, tuning: { fileConcurrency: spec.files, bigFileConcurrency: spec.bigFiles, bigFileBytes: spec.partMiB * MiB } });
      const report = await courier.ship(spec.src, { jobId: spec.jobId });
      if (!report.ok) throw new Error(JSON.stringify(report.failed));
      console.log(report.shipped.reduce((s, x) => s + x.bytes, 0));
    } else {
      const fetcher = new Fetcher({ store }, { logger: silentLogger, tuning: { fileConcurrency: spec.files, bigFileConcurrency: spec.bigFiles, partSize: spec.partMiB * MiB, partsInFlight: spec.inFlight } });
      const info = await fetcher.pull(`r2://jobs/${spec.jobId}/slot`, { dest: spec.dest });
      console.log(info.bytes);
    }
  } finally {
    store.close();
  }
}

function timedChild(spec) {
  const tfile = path.join(os.tmpdir(), `r2d1-tune-${process.pid}-${randomBytes(4).toString('hex')}`);
  return new Promise((resolve) => {
    const t0 = process.hrtime.bigint();
    const c = spawn('/usr/bin/time', ['-v', '-o', tfile, process.execPath, fileURLToPath(import.meta.url), '--one', JSON.stringify(spec)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    c.stdout.on('data', (d) => (out += d));
    c.stderr.on('data', (d) => (err += d));
    c.on('close', (code) => {
      const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
      const t = fs.readFileSync(tfile, 'utf8');
      fs.rmSync(tfile);
      const num = (re) => Number(re.exec(t)?.[1] ?? NaN);
      const bytes = Number(out.trim().split('\n').pop());
      resolve({ code, seconds, bytes, err: err.slice(-500), rssMiB: num(/Maximum resident set size \(kbytes\): (\d+)/) / 1024, cpu: num(/User time \(seconds\): ([\d.]+)/) + num(/System time \(seconds\): ([\d.]+)/) });
    });
  });
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

async function main() {
  const argv = process.argv.slice(2);
  if (argv[0] === '--one') return one(JSON.parse(argv[1]));
  const [dir, src] = argv;
  if (!['ship', 'pull'].includes(dir) || !src) throw new Error('usage: node bench/tune.mjs ship|pull COURIER_DIR [--reps N] [--grid ...]');
  const opt = (name, dflt) => (argv.includes(name) ? argv[argv.indexOf(name) + 1] : dflt);
  const reps = Number(opt('--reps', 3));
  const grid = Object.fromEntries(opt('--grid', 'partMiB=8,16,32;inFlight=4,8;files=8;bigFiles=2').split(';').map((kv) => {
    const [k, v] = kv.split('=');
    return [k, v.split(',').map(Number)];
  }));
  let combos = [{}];
  for (const [k, vs] of Object.entries(grid)) combos = combos.flatMap((c) => vs.map((v) => ({ ...c, [k]: v })));
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'r2d1-tune-'));
  const results = combos.map(() => []);
  const { S3Store } = await import(LIB);
  const e = process.env;
  const store = new S3Store({ kind: 'r2', bucket: e.R2D1_R2_BUCKET, endpoint: e.R2D1_R2_ENDPOINT_URL, accessKeyId: e.R2D1_R2_ACCESS_KEY, secretAccessKey: e.R2D1_R2_SECRET_KEY });
  const cleanup = async (jobId) => {
    await store.delete((await store.list(`jobs/${jobId}/`)).objects.map((o) => o.key));
    const gc = opt('--gc', null);
    if (gc) spawnSync('sh', ['-c', gc], { stdio: 'ignore' });
  };
  let pullJob;
  if (dir === 'pull') {
    pullJob = `tune-src-${randomBytes(3).toString('hex')}`;
    const r = await timedChild({ dir: 'ship', src: path.resolve(src), jobId: pullJob, partMiB: 8, inFlight: 4, files: 8, bigFiles: 2 });
    if (r.code !== 0) throw new Error(r.err);
  }
  for (let rep = 0; rep < reps; rep++) {
    for (const [i, c] of combos.entries()) {
      const dest = path.join(scratch, 'dest');
      fs.rmSync(dest, { recursive: true, force: true });
      const spec = { dir, src: path.resolve(src), dest, jobId: pullJob ?? `tune-${rep}-${i}-${randomBytes(3).toString('hex')}`, ...c };
      const r = await timedChild(spec);
      if (dir === 'ship') await cleanup(spec.jobId);
      if (r.code !== 0) console.error(`failed ${JSON.stringify(c)}: ${r.err}`);
      else results[i].push(r);
      console.error(`${JSON.stringify(c)} rep${rep}: ${r.code === 0 ? `${(r.bytes / MiB / r.seconds).toFixed(1)} MiB/s, RSS ${r.rssMiB.toFixed(0)} MiB` : 'failed'}`);
    }
  }
  fs.rmSync(scratch, { recursive: true, force: true });
  if (pullJob) await cleanup(pullJob);
  store.close();
  console.log(`| ${dir} | ${Object.keys(grid).join(' | ')} | MiB/s median [min–max] | peak RSS MiB (max) | CPU s/GiB |`);
  console.log(`|---|${Object.keys(grid).map(() => '---:').join('|')}|---:|---:|---:|`);
  for (const [i, c] of combos.entries()) {
    const rs = results[i];
    if (!rs.length) continue;
    const rates = rs.map((r) => r.bytes / MiB / r.seconds);
    console.log(`| | ${Object.values(c).join(' | ')} | ${median(rates).toFixed(1)} [${Math.min(...rates).toFixed(1)}–${Math.max(...rates).toFixed(1)}] | ${Math.max(...rs.map((r) => r.rssMiB)).toFixed(0)} | ${median(rs.map((r) => (r.cpu / r.bytes) * 1024 * MiB)).toFixed(1)} |`);
  }
}

main().catch((e) => {
  console.error(e.stack ?? e);
  process.exitCode = 1;
});
