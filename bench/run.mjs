#!/usr/bin/env node
/**
 * r2d1 benchmark harness: `npm run bench [-- options]` (builds first), or `node bench/run.mjs` on a built tree.
 *
 * Servers: miniflare's R2 S3 endpoint (in this process) and Ceph radosgw on a one-node cluster
 * (../shared/recipes/radosgw-up.sh, or $R2D1_BENCH_RECIPES). Contenders on the same data and server:
 * `r2d1 ship` / `r2d1 pull` (lib/cli), Debian's aws-cli v2 (/usr/bin/aws s3 cp --recursive), Debian's rclone
 * (copy), and the Python original's approach (boto3 upload_file/download_file one file after another).
 * Each peer is measured pairwise against r2d1, interleaved (A,B / B,A alternating), so machine noise hits both.
 *
 * options:
 *   --quick                 tens of MB, one repetition, 5 detection events; report in the data dir
 *   --reps N                repetitions per pair (default 3)
 *   --servers a,b           radosgw,miniflare (default radosgw; --quick: both, miniflare with (a) only: the
 *                           peers are slow there, see BENCHMARKS.md)
 *   --workloads a,b,c       (a) 2 GiB + small configs, (b) 8 x 256 MiB + 20 small, (c) 2000 x 64 KiB
 *   --conditions l,w        loopback,wan (default loopback). wan: a network namespace whose lo is shaped
 *                           for the client<->proxy port only (tc htb token bucket, --wan-rate, default
 *                           400mbit; this kernel has no prio or netem), plus a TCP proxy (bench/proxy.mjs)
 *                           adding --wan-delay ms (default 15) each way. Needs root.
 *   --scale F               multiply the large files' sizes, and (c)'s file count if F < 1, by F
 *                           (e.g. 0.25 for a shorter WAN run)
 *   --contenders list       r2d1 is always run; peers among aws,rclone,boto3 (default all)
 *   --detect N              detection-latency events (default 20; 0 to skip)
 *   --data-dir DIR          generated data and scratch (default /tmp/r2d1-bench; never in the repo)
 *   --no-report             do not rewrite BENCHMARKS.md (results still go to bench/results/)
 *
 * Results: bench/results/<condition>.json (one file per condition, replaced by a run that measures it),
 * and BENCHMARKS.md rendered from every results file present (see bench/report.mjs).
 */
import { spawn, spawnSync } from 'node:child_process';
import { randomFillSync, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { renderReport } from './report.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..');
const CLI = path.join(ROOT, 'lib/cli/index.js');
const RECIPES = process.env.R2D1_BENCH_RECIPES ?? path.resolve(ROOT, '../shared/recipes');
const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const NETNS = 'r2d1bench';
const PEERS = ['aws', 'rclone', 'boto3'];
const PY = '/usr/bin/python3';
const AWS = '/usr/bin/aws';

// ---------------------------------------------------------------- options
function parseArgs(argv) {
  const o = {
    quick: false, reps: 3, servers: ['radosgw'], workloads: ['a', 'b', 'c'], conditions: ['loopback'],
    scale: 1, peers: PEERS, detect: 20, dataDir: '/tmp/r2d1-bench', report: true, wanRate: '400mbit', wanDelay: 15,
    inside: null, resultFile: null,
  };
  const list = (v) => v.split(',').map((s) => s.trim()).filter(Boolean);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--quick') o.quick = true;
    else if (a === '--reps') o.reps = Number(next());
    else if (a === '--servers') o.servers = list(next());
    else if (a === '--workloads') o.workloads = list(next());
    else if (a === '--conditions') o.conditions = list(next());
    else if (a === '--scale') o.scale = Number(next());
    else if (a === '--contenders') o.peers = list(next()).filter((c) => c !== 'r2d1');
    else if (a === '--detect') o.detect = Number(next());
    else if (a === '--data-dir') o.dataDir = path.resolve(next());
    else if (a === '--no-report') o.report = false;
    else if (a === '--wan-rate') o.wanRate = next();
    else if (a === '--wan-delay') o.wanDelay = Number(next());
    else if (a === '--inside-netns') o.inside = next(); // internal: this process runs in the namespace
    else if (a === '--result-file') o.resultFile = next(); // internal
    else if (a === '--help' || a === '-h') {
      console.log(fs.readFileSync(fileURLToPath(import.meta.url), 'utf8').split('*/')[0]);
      process.exit(0);
    } else throw new Error(`unknown option ${a} (see --help)`);
  }
  if (o.quick) {
    if (!argv.includes('--servers')) o.servers = ['radosgw', 'miniflare'];
    // miniflare is slow for the peers (see BENCHMARKS.md): only workload (a) there in a quick run
    if (!argv.includes('--workloads')) o.miniflareWorkloads = ['a'];
    if (!argv.includes('--reps')) o.reps = 1;
    if (!argv.includes('--detect')) o.detect = 5;
  }
  for (const s of o.servers) if (!['radosgw', 'miniflare'].includes(s)) throw new Error(`unknown server ${s}`);
  for (const w of o.workloads) if (!['a', 'b', 'c'].includes(w)) throw new Error(`unknown workload ${w}`);
  for (const c of o.conditions) if (!['loopback', 'wan'].includes(c)) throw new Error(`unknown condition ${c}`);
  for (const p of o.peers) if (!PEERS.includes(p)) throw new Error(`unknown contender ${p}`);
  return o;
}

// ---------------------------------------------------------------- workloads
/** Files of a workload: [relative path, size]. Small files keep their size under --scale. */
function workloadFiles(w, quick, scale) {
  const big = (n) => Math.max(MiB, Math.round((n * scale) / MiB) * MiB);
  const small = (i) => 1024 * (1 + ((i * 7) % 16)); // 1-16 KiB
  if (w === 'a') {
    return [['checkpoint.pt', big(quick ? 24 * MiB : 2 * GiB)], ['config.json', 4096], ['trainer_state.json', 32 * 1024], ['rng_state.pth', 16 * 1024]];
  }
  if (w === 'b') {
    const out = [];
    for (let i = 1; i <= 8; i++) out.push([`model-${String(i).padStart(5, '0')}-of-00008.safetensors`, big(quick ? 3 * MiB : 256 * MiB)]);
    for (let i = 0; i < 20; i++) out.push([i < 4 ? ['config.json', 'generation_config.json', 'tokenizer_config.json', 'model.safetensors.index.json'][i] : `extra/file_${String(i).padStart(2, '0')}.json`, small(i)]);
    return out;
  }
  const n = quick ? 200 : Math.max(100, Math.round(2000 * Math.min(1, scale)));
  return Array.from({ length: n }, (_, i) => [`shard_${String(i % 20).padStart(2, '0')}/${String(i).padStart(6, '0')}.bin`, 64 * 1024]);
}

const WORKLOAD_TITLE = {
  a: 'one large checkpoint (1 big file + 3 small)',
  b: 'sharded HF-style folder (8 shards + 20 small)',
  c: 'dataset (many 64 KiB files)',
};

/** Random (incompressible) bytes; reused when already there with the right sizes. */
function ensureWorkload(dataDir, w, quick, scale) {
  const files = workloadFiles(w, quick, scale);
  const tag = `${w}-${quick ? 'quick' : 'full'}-${scale}`;
  const ckptDir = path.join(dataDir, 'src', tag); // a courier directory: slot/ + slot.json
  const slot = path.join(ckptDir, 'slot');
  const buf = Buffer.allocUnsafe(4 * MiB);
  for (const [rel, size] of files) {
    const p = path.join(slot, rel);
    if (fs.existsSync(p) && fs.statSync(p).size === size) continue;
    fs.mkdirSync(path.dirname(p), { recursive: true });
    const fd = fs.openSync(p, 'w');
    for (let left = size; left > 0; ) {
      const n = Math.min(left, buf.length);
      randomFillSync(buf, 0, n);
      fs.writeSync(fd, buf, 0, n);
      left -= n;
    }
    fs.closeSync(fd);
  }
  const sidecar = { name: 'slot', epoch: 1, timestamp: 1_700_000_000, files: files.map(([r]) => r), metadata: { bench: tag } };
  fs.writeFileSync(path.join(ckptDir, 'slot.json'), JSON.stringify(sidecar));
  const bytes = files.reduce((s, [, n]) => s + n, 0);
  return { w, tag, ckptDir, slot, bytes, count: files.length };
}

// ---------------------------------------------------------------- processes
function sh(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', ...opts });
  if (r.status !== 0 && !opts.allowFail) {
    throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${(r.stderr || r.stdout || '').slice(-2000)}`);
  }
  return r;
}

/** Runs a command under GNU time; resolves {seconds, maxRssKiB, cpuSec, code, stderr}. */
function timed(cmd, args, { env, cwd }) {
  const tfile = path.join(os.tmpdir(), `r2d1-bench-time-${process.pid}-${randomBytes(4).toString('hex')}`);
  return new Promise((resolve) => {
    const t0 = process.hrtime.bigint();
    const child = spawn('/usr/bin/time', ['-v', '-o', tfile, cmd, ...args], { env, cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    let stdout = '';
    child.stdout.on('data', (d) => (stdout += d).length > 65536 && (stdout = stdout.slice(-32768)));
    child.stderr.on('data', (d) => (stderr += d).length > 65536 && (stderr = stderr.slice(-32768)));
    child.on('close', (code) => {
      const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
      let text = '';
      try {
        text = fs.readFileSync(tfile, 'utf8');
        fs.rmSync(tfile);
      } catch {}
      const num = (re) => Number(re.exec(text)?.[1] ?? NaN);
      resolve({
        code,
        seconds,
        maxRssKiB: num(/Maximum resident set size \(kbytes\): (\d+)/),
        cpuSec: num(/User time \(seconds\): ([\d.]+)/) + num(/System time \(seconds\): ([\d.]+)/),
        stdout,
        stderr,
      });
    });
  });
}

// ---------------------------------------------------------------- servers
async function startMiniflare() {
  const { Miniflare } = await import('miniflare');
  const accessKeyId = randomBytes(16).toString('hex');
  const secretAccessKey = randomBytes(32).toString('hex');
  const mf = new Miniflare({
    host: '127.0.0.1',
    port: 0,
    modules: true,
    script: 'export default { fetch() { return new Response("r2d1 bench") } }',
    compatibilityDate: '2025-01-01',
    r2Buckets: { BUCKET: { id: 'r2d1-bench', s3Credentials: { accessKeyId, secretAccessKey } } },
    handleRuntimeStdio(stdout, stderr) {
      stdout.resume();
      stderr.resume();
    },
  });
  const url = await mf.ready;
  const base = url.href.endsWith('/') ? url.href : `${url.href}/`;
  return {
    name: 'miniflare',
    endpoint: `${base}cdn-cgi/local/r2/s3`,
    port: Number(url.port),
    bucket: 'r2d1-bench',
    accessKeyId,
    secretAccessKey,
    stop: () => mf.dispose(),
    gc: () => {},
  };
}

async function startRadosgw(dataDir) {
  const dir = path.join(dataDir, 'ceph');
  const port = 17480;
  const up = path.join(RECIPES, 'radosgw-up.sh');
  if (!fs.existsSync(up)) throw new Error(`${up} not found: set R2D1_BENCH_RECIPES`);
  ensureDebianPackages();
  await stopRadosgw(dir);
  const r = sh('bash', [up, dir, String(port)]);
  process.stderr.write(r.stdout);
  const conf = path.join(dir, 'ceph.conf');
  const server = {
    name: 'radosgw',
    endpoint: `http://127.0.0.1:${port}`,
    port,
    bucket: 'r2d1-bench',
    accessKeyId: 'BENCHKEY',
    secretAccessKey: 'BENCHSECRET',
    stop: () => stopRadosgw(dir),
    // Deleted objects' data stays until rgw's garbage collector runs (hours by default), and the
    // memstore OSD holds 6 GiB: collect now, between trials.
    gc: () => sh('timeout', ['120', 'radosgw-admin', '-c', conf, 'gc', 'process', '--include-all'], { allowFail: true }),
  };
  return server;
}

/** radosgw-down.sh sends SIGTERM; a daemon stuck on a full OSD ignores it, so wait, then SIGKILL. */
async function stopRadosgw(dir) {
  const pids = ['client.rgw.a', 'osd.0', 'mon.a']
    .map((n) => path.join(dir, 'run', `${n}.pid`))
    .filter((f) => fs.existsSync(f))
    .map((f) => Number(fs.readFileSync(f, 'utf8').trim()))
    .filter((p) => p > 0);
  sh('bash', [path.join(RECIPES, 'radosgw-down.sh'), dir], { allowFail: true });
  const alive = (p) => {
    try {
      process.kill(p, 0);
      return true;
    } catch {
      return false;
    }
  };
  for (let i = 0; i < 50 && pids.some(alive); i++) await sleep(200);
  for (const p of pids.filter(alive)) process.kill(p, 'SIGKILL');
}

function ensureDebianPackages() {
  const need = [];
  if (!fs.existsSync('/usr/bin/radosgw')) need.push('radosgw', 'ceph-mon', 'ceph-osd', 'uuid-runtime');
  if (!fs.existsSync(AWS)) need.push('awscli');
  if (!fs.existsSync('/usr/bin/rclone')) need.push('rclone');
  if (spawnSync(PY, ['-c', 'import boto3']).status !== 0) need.push('python3-boto3');
  if (!fs.existsSync('/usr/bin/time')) need.push('time');
  if (need.length === 0) return;
  console.error(`[bench] installing from Debian: ${need.join(' ')}`);
  sh('apt-get', ['update', '-qq']);
  sh('apt-get', ['install', '-y', '--no-install-recommends', ...need], { env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
}

async function startProxy(targetPort, listenPort, delayMs) {
  const child = spawn(process.execPath, [path.join(HERE, 'proxy.mjs'), String(listenPort), String(targetPort), String(delayMs)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  await new Promise((resolve, reject) => {
    child.stdout.once('data', resolve);
    child.once('exit', (c) => reject(new Error(`proxy exited ${c}`)));
  });
  return child;
}

// ---------------------------------------------------------------- S3 from the harness (setup, listing, cleanup)
async function s3For(server) {
  const { S3Client, CreateBucketCommand, ListObjectsV2Command, DeleteObjectsCommand } = await import('@aws-sdk/client-s3');
  const client = new S3Client({
    region: 'us-east-1',
    endpoint: server.endpoint,
    forcePathStyle: true,
    credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
  const Bucket = server.bucket;
  const list = async (Prefix) => {
    const keys = [];
    let ContinuationToken;
    do {
      const page = await client.send(new ListObjectsV2Command({ Bucket, Prefix, ContinuationToken }));
      for (const o of page.Contents ?? []) keys.push(o.Key);
      ContinuationToken = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (ContinuationToken);
    return keys;
  };
  return {
    client,
    list,
    async ensureBucket() {
      try {
        await client.send(new CreateBucketCommand({ Bucket }));
      } catch (e) {
        if (!/BucketAlreadyOwnedByYou|BucketAlreadyExists/.test(e.name)) throw e;
      }
    },
    async deletePrefix(Prefix) {
      const keys = await list(Prefix);
      for (let i = 0; i < keys.length; i += 1000) {
        await client.send(new DeleteObjectsCommand({ Bucket, Delete: { Objects: keys.slice(i, i + 1000).map((Key) => ({ Key })), Quiet: true } }));
      }
      return keys.length;
    },
  };
}

// ---------------------------------------------------------------- contenders
function contenderEnv(server, scratch) {
  const base = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !/^(R2D1_|CLOUDFLARE_|AWS_|R2_|D1_|RCLONE_)/.test(k)),
  );
  const awsConfig = path.join(scratch, 'aws-config');
  fs.writeFileSync(awsConfig, '[default]\nregion = us-east-1\ns3 =\n  addressing_style = path\n');
  return {
    r2d1: {
      ...base,
      R2D1_R2_ENDPOINT_URL: server.endpoint,
      R2D1_R2_BUCKET: server.bucket,
      R2D1_R2_ACCESS_KEY: server.accessKeyId,
      R2D1_R2_SECRET_KEY: server.secretAccessKey,
    },
    aws: {
      ...base,
      AWS_ACCESS_KEY_ID: server.accessKeyId,
      AWS_SECRET_ACCESS_KEY: server.secretAccessKey,
      AWS_CONFIG_FILE: awsConfig,
      AWS_SHARED_CREDENTIALS_FILE: '/dev/null',
      AWS_PAGER: '',
    },
    rclone: {
      ...base, // AWS_CA_BUNDLE is dropped above: rclone 1.60 fails with it set
      RCLONE_CONFIG: '/dev/null',
      RCLONE_CONFIG_BENCH_TYPE: 's3',
      RCLONE_CONFIG_BENCH_PROVIDER: 'Other',
      RCLONE_CONFIG_BENCH_ACCESS_KEY_ID: server.accessKeyId,
      RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY: server.secretAccessKey,
      RCLONE_CONFIG_BENCH_ENDPOINT: server.endpoint,
      RCLONE_CONFIG_BENCH_REGION: 'us-east-1',
      RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE: 'true',
      RCLONE_S3_NO_CHECK_BUCKET: 'true',
    },
    boto3: {
      ...base,
      BENCH_ENDPOINT: server.endpoint,
      BENCH_BUCKET: server.bucket,
      BENCH_ACCESS_KEY: server.accessKeyId,
      BENCH_SECRET_KEY: server.secretAccessKey,
    },
  };
}

/** The exact command line of one contender: [cmd, args]. */
function command(contender, dir, { server, src, key, dest, jobId }) {
  const b = server.bucket;
  if (contender === 'r2d1') {
    return dir === 'ship'
      ? [process.execPath, [CLI, 'ship', src, '--job-id', jobId]]
      : [process.execPath, [CLI, 'pull', `r2://jobs/${jobId}/slot`, '--dest', dest]];
  }
  if (contender === 'aws') {
    const [from, to] = dir === 'ship' ? [src, `s3://${b}/${key}`] : [`s3://${b}/${key}`, dest];
    return [AWS, ['--endpoint-url', server.endpoint, 's3', 'cp', '--recursive', '--only-show-errors', from, to]];
  }
  if (contender === 'rclone') {
    const [from, to] = dir === 'ship' ? [src, `bench:${b}/${key}`] : [`bench:${b}/${key}`, dest];
    return ['/usr/bin/rclone', ['copy', from, to]];
  }
  return dir === 'ship' ? [PY, [path.join(HERE, 'boto3_baseline.py'), 'upload', src, key]] : [PY, [path.join(HERE, 'boto3_baseline.py'), 'download', key, dest]];
}

const displayCmd = (cmd, args) => [cmd === process.execPath ? 'node' : cmd, ...args.map((a) => (a.startsWith(ROOT) ? path.relative(ROOT, a) : a))].join(' ');

// ---------------------------------------------------------------- one condition
async function runCondition(o, condition) {
  const scratch = path.join(o.dataDir, `scratch-${condition}`);
  fs.rmSync(scratch, { recursive: true, force: true });
  fs.mkdirSync(scratch, { recursive: true });
  const workloads = o.workloads.map((w) => ensureWorkload(o.dataDir, w, o.quick, o.scale));
  const result = { condition, records: [], detection: [], commands: {}, started: new Date().toISOString(), errors: [], notes: [] };
  if (o.servers.includes('miniflare') && o.peers.includes('rclone')) {
    result.notes.push('rclone pull is skipped on miniflare: rclone 1.60\'s GETs fail there with SignatureDoesNotMatch.');
  }
  const log = (m) => console.error(`[bench ${condition}] ${m}`);

  for (const serverName of o.servers) {
    let server;
    const cleanups = [];
    try {
      log(`starting ${serverName}`);
      server = serverName === 'miniflare' ? await startMiniflare() : await startRadosgw(path.join(o.dataDir, condition));
      cleanups.push(() => server.stop());
      if (condition === 'wan') {
        const listen = 18000 + (serverName === 'miniflare' ? 1 : 0);
        const proxy = await startProxy(server.port, listen, o.wanDelay);
        cleanups.push(() => proxy.kill('SIGTERM'));
        shapePort(listen, o.wanRate);
        const u = new URL(server.endpoint);
        u.port = String(listen);
        server.endpoint = u.href.replace(/\/$/, '');
        log(`${serverName} behind proxy ${server.endpoint} (+${o.wanDelay} ms each way, ${o.wanRate})`);
      }
      const s3 = await s3For(server);
      if (serverName === 'radosgw') await s3.ensureBucket(); // miniflare's bucket is a binding (no CreateBucket)
      const env = contenderEnv(server, scratch);

      for (const wl of workloads) {
        if (serverName === 'miniflare' && o.miniflareWorkloads && !o.miniflareWorkloads.includes(wl.w)) continue;
        for (let rep = 0; rep < o.reps; rep++) {
          // --- ship: pairs (r2d1, peer), order alternating; the first r2d1 version is kept for the pulls
          let pullJob = null;
          for (const [pi, peer] of o.peers.entries()) {
            const order = (rep + pi) % 2 === 0 ? ['r2d1', peer] : [peer, 'r2d1'];
            const pairId = `${wl.w}-${rep}-${peer}`;
            const jobId = `bench-${serverName}-${pairId}-${randomBytes(3).toString('hex')}`;
            for (const c of order) {
              const key = `peers/${c}/${pairId}`;
              const [cmd, args] = command(c, 'ship', { server, src: c === 'r2d1' ? wl.ckptDir : wl.slot, key, jobId });
              result.commands[`${c} ship`] ??= displayCmd(cmd, args);
              const r = await timed(cmd, args, { env: env[c], cwd: scratch });
              record(result, { server: serverName, workload: wl.w, direction: 'ship', contender: c, rep, peer, wl, r, log });
              // Free the server's memory at once (radosgw's memstore holds 6 GiB): only the first r2d1
              // version of the repetition stays, for the pulls.
              if (c !== 'r2d1') await s3.deletePrefix(`${key}/`);
              else if (pullJob === null && r.code === 0) pullJob = jobId;
              else await s3.deletePrefix(`jobs/${jobId}/`);
              server.gc();
            }
          }
          // --- pull the kept version: r2d1 through its job URI, peers the same objects by prefix
          const keys = await s3.list(`jobs/${pullJob}/slot/`);
          const manifest = keys.find((k) => k.endsWith('.manifest.json'));
          if (!manifest) {
            result.errors.push(`${serverName} ${wl.w} rep ${rep}: no committed version to pull`);
            continue;
          }
          const versionPrefix = manifest.replace(/\.manifest\.json$/, '');
          for (const [pi, peer] of o.peers.entries()) {
            // rclone 1.60's GETs fail on miniflare (SignatureDoesNotMatch): a known incompatibility, skipped.
            if (serverName === 'miniflare' && peer === 'rclone') continue;
            const order = (rep + pi) % 2 === 0 ? ['r2d1', peer] : [peer, 'r2d1'];
            for (const c of order) {
              const dest = path.join(scratch, `pull-${c}`);
              fs.rmSync(dest, { recursive: true, force: true });
              fs.mkdirSync(dest, { recursive: true });
              const [cmd, args] = command(c, 'pull', { server, key: versionPrefix, dest, jobId: pullJob });
              result.commands[`${c} pull`] ??= displayCmd(cmd, args);
              const r = await timed(cmd, args, { env: env[c], cwd: scratch });
              const got = dirBytes(c === 'r2d1' ? path.join(dest, 'slot') : dest);
              if (r.code === 0 && got !== wl.bytes) r.code = `incomplete (${got} of ${wl.bytes} bytes)`;
              record(result, { server: serverName, workload: wl.w, direction: 'pull', contender: c, rep, peer, wl, r, log });
              fs.rmSync(dest, { recursive: true, force: true });
            }
          }
          await s3.deletePrefix(`jobs/${pullJob}/`);
          server.gc();
        }
      }

      if (o.detect > 0) {
        log(`detection latency: ${o.detect} events`);
        const lat = await detectionLatency(server, s3, env.r2d1, scratch, o.detect);
        result.detection.push({ server: serverName, samplesMs: lat });
        log(`detection median ${median(lat).toFixed(0)} ms`);
      }
    } catch (e) {
      result.errors.push(`${serverName}: ${e.stack ?? e}`);
      log(`ERROR ${e.stack ?? e}`);
    } finally {
      for (const c of cleanups.reverse()) {
        try {
          await c();
        } catch {}
      }
    }
  }
  result.finished = new Date().toISOString();
  fs.rmSync(scratch, { recursive: true, force: true });
  return result;
}

function record(result, { server, workload, direction, contender, rep, peer, wl, r, log }) {
  const ok = r.code === 0;
  const rec = {
    server, workload, direction, contender, rep, pair: peer, bytes: wl.bytes, files: wl.count,
    seconds: r.seconds, mibps: ok ? wl.bytes / MiB / r.seconds : null, maxRssMiB: r.maxRssKiB / 1024,
    cpuSecPerGiB: (r.cpuSec / wl.bytes) * GiB, ok,
  };
  if (!ok) rec.error = `exit ${r.code}: ${r.stderr.trim().split('\n').slice(-3).join(' | ')}`.slice(0, 500);
  result.records.push(rec);
  log(`${server} ${workload} ${direction} ${contender.padEnd(6)} rep${rep} (vs ${peer}): ${ok ? `${rec.mibps.toFixed(1)} MiB/s` : rec.error} ` +
    `${r.seconds.toFixed(2)} s, RSS ${rec.maxRssMiB.toFixed(0)} MiB, CPU ${rec.cpuSecPerGiB.toFixed(1)} s/GiB`);
}

function dirBytes(dir) {
  let n = 0;
  if (!fs.existsSync(dir)) return 0;
  for (const e of fs.readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile() && !path.join(e.parentPath ?? e.path, e.name).includes(`${path.sep}.r2d1`)) n += fs.statSync(path.join(e.parentPath ?? e.path, e.name)).size;
  }
  return n;
}

/**
 * Detection latency: `r2d1 watch` runs; each event writes a small checkpoint (2 files, ~1 MiB) and then
 * its sidecar; the time from the sidecar's write returning to the version's manifest being listed in the
 * bucket (listing polled every 10 ms).
 */
async function detectionLatency(server, s3, env, scratch, n) {
  const dir = path.join(scratch, 'watch');
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  const jobId = `bench-detect-${randomBytes(3).toString('hex')}`;
  const child = spawn(process.execPath, [CLI, 'watch', dir, '--job-id', jobId, '--poll-every', '30', '--keep', '2'], {
    env, cwd: scratch, stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr = (stderr + d).slice(-8000)));
  const samples = [];
  try {
    await sleep(3000); // first scan done well before
    if (child.exitCode !== null) throw new Error(`r2d1 watch exited: ${stderr}`);
    for (let i = 0; i < n; i++) {
      const name = `slot_${i % 2}`;
      const slot = path.join(dir, name);
      fs.rmSync(slot, { recursive: true, force: true });
      fs.mkdirSync(slot);
      fs.writeFileSync(path.join(slot, 'model.pt'), randomBytes(1024 * 1024));
      fs.writeFileSync(path.join(slot, 'config.json'), JSON.stringify({ i }));
      const before = new Set(await s3.list(`jobs/${jobId}/${name}/`));
      fs.writeFileSync(path.join(dir, `${name}.json`), JSON.stringify({ name, epoch: i + 1, timestamp: Date.now() / 1000, files: ['model.pt', 'config.json'] }));
      const t0 = performance.now();
      for (;;) {
        const keys = await s3.list(`jobs/${jobId}/${name}/`);
        if (keys.some((k) => k.endsWith('.manifest.json') && !before.has(k))) break;
        if (performance.now() - t0 > 60_000) throw new Error(`no commit within 60 s: ${stderr.slice(-2000)}`);
        await sleep(10);
      }
      samples.push(performance.now() - t0);
      await sleep(300);
    }
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => (child.exitCode !== null ? r() : child.once('exit', r)));
  }
  await s3.deletePrefix(`jobs/${jobId}/`);
  return samples;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

// ---------------------------------------------------------------- WAN namespace
function shapePort(port, rate) {
  // Only the client<->proxy port is the "WAN": radosgw's own traffic (to its OSD and mon, and from the
  // proxy) stays unshaped. This kernel has tbf and htb but no prio: an htb class is the token bucket
  // (rate = ceil, 1 MB burst), u32 filters put the proxy port's packets in it, everything else bypasses
  // htb (default 0 = unclassified traffic is sent directly).
  const tc = (...a) => sh('tc', a);
  if (!sh('tc', ['qdisc', 'show', 'dev', 'lo']).stdout.includes('htb 1:')) {
    tc('qdisc', 'add', 'dev', 'lo', 'root', 'handle', '1:', 'htb', 'default', '0');
  }
  const cls = `1:${(port % 4000) + 10}`;
  tc('class', 'add', 'dev', 'lo', 'parent', '1:', 'classid', cls, 'htb', 'rate', rate, 'ceil', rate, 'burst', '1mb', 'cburst', '1mb');
  for (const dir of ['dport', 'sport']) {
    tc('filter', 'add', 'dev', 'lo', 'parent', '1:', 'protocol', 'ip', 'prio', '1', 'u32', 'match', 'ip', dir, String(port), '0xffff', 'flowid', cls);
  }
}

function runInNamespace(o, argv) {
  if (process.getuid?.() !== 0) throw new Error('the wan condition needs root (network namespace, tc)');
  sh('ip', ['netns', 'del', NETNS], { allowFail: true });
  sh('ip', ['netns', 'add', NETNS]);
  try {
    sh('ip', ['netns', 'exec', NETNS, 'ip', 'link', 'set', 'lo', 'up']);
    const resultFile = path.join(o.dataDir, `wan-result-${process.pid}.json`);
    const args = argv.filter((a, i) => a !== '--conditions' && argv[i - 1] !== '--conditions');
    const r = spawnSync('ip', ['netns', 'exec', NETNS, process.execPath, fileURLToPath(import.meta.url), ...args, '--conditions', 'wan', '--inside-netns', NETNS, '--result-file', resultFile], { stdio: 'inherit' });
    if (r.status !== 0) throw new Error(`wan run failed (${r.status})`);
    const res = JSON.parse(fs.readFileSync(resultFile, 'utf8'));
    fs.rmSync(resultFile);
    return res;
  } finally {
    sh('ip', ['netns', 'del', NETNS], { allowFail: true });
  }
}

// ---------------------------------------------------------------- machine, main
function machine() {
  const cpu = os.cpus();
  const ver = (cmd, args) => {
    const r = spawnSync(cmd, args, { encoding: 'utf8', env: { ...process.env, AWS_CA_BUNDLE: '' } });
    return (r.stdout || r.stderr || '').split('\n')[0].trim();
  };
  return {
    cpu: `${cpu.length} × ${cpu[0]?.model ?? '?'}`,
    memGiB: Math.round(os.totalmem() / GiB),
    kernel: `${os.type()} ${os.release()}`,
    node: process.version,
    aws: ver(AWS, ['--version']),
    rclone: ver('/usr/bin/rclone', ['version']),
    boto3: ver(PY, ['-c', 'import boto3; print("boto3", boto3.__version__)']),
    radosgw: ver('/usr/bin/radosgw', ['--version']),
    r2d1: JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')).version,
    git: spawnSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).stdout.trim(),
  };
}

async function main() {
  const argv = process.argv.slice(2);
  const o = parseArgs(argv);
  if (!fs.existsSync(CLI)) throw new Error(`${CLI} missing: run npm run build (npm run bench does)`);
  fs.mkdirSync(o.dataDir, { recursive: true });

  if (o.inside) {
    const res = await runCondition(o, 'wan');
    fs.writeFileSync(o.resultFile, JSON.stringify(res));
    return;
  }

  const runs = [];
  for (const condition of o.conditions) {
    const res = condition === 'wan' ? runInNamespace(o, argv) : await runCondition(o, condition);
    res.options = { quick: o.quick, reps: o.reps, servers: o.servers, workloads: o.workloads, scale: o.scale, peers: o.peers,
      wanRate: o.wanRate, wanDelay: o.wanDelay, argv: argv.join(' ') };
    res.machine = machine();
    res.workloads = Object.fromEntries(o.workloads.map((w) => {
      const files = workloadFiles(w, o.quick, o.scale);
      return [w, { title: WORKLOAD_TITLE[w], files: files.length, bytes: files.reduce((s, [, n]) => s + n, 0), largest: Math.max(...files.map(([, n]) => n)) }];
    }));
    runs.push(res);
    const file = o.quick ? path.join(o.dataDir, `quick-${condition}.json`) : path.join(HERE, 'results', `${condition}.json`);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, `${JSON.stringify(res, null, 1)}\n`);
    console.error(`[bench] results: ${file}`);
  }
  const md = renderReport(o.quick ? runs : loadResults());
  const out = o.quick ? path.join(o.dataDir, 'BENCHMARKS.quick.md') : path.join(ROOT, 'BENCHMARKS.md');
  if (o.report || o.quick) {
    fs.writeFileSync(out, md);
    console.error(`[bench] report: ${out}`);
  }
  console.log(md.split('\n## Details')[0]);
  if (runs.some((r) => r.errors.length || r.records.some((x) => !x.ok))) {
    console.error('[bench] some runs failed: see the report');
    process.exitCode = 1;
  }
}

function loadResults() {
  const dir = path.join(HERE, 'results');
  return fs.existsSync(dir)
    ? fs.readdirSync(dir).filter((f) => f.endsWith('.json')).sort().map((f) => JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8')))
    : [];
}

main().catch((e) => {
  console.error(`[bench] ${e.stack ?? e}`);
  process.exitCode = 1;
});
