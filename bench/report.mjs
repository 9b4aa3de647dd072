/**
 * Renders BENCHMARKS.md from the results of bench/run.mjs (one object per condition; see run.mjs).
 * `node bench/report.mjs` re-renders BENCHMARKS.md from bench/results/*.json without measuring.
 * The hand-written analysis (causes of missed targets, tuning evidence) lives in bench/findings.md and
 * is included verbatim.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const PEERS = ['aws', 'rclone', 'boto3'];
const PEER_NAME = { r2d1: 'r2d1', aws: 'aws-cli', rclone: 'rclone', boto3: 'boto3 (original)' };
const MiB = 1024 * 1024;

const median = (xs) => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  return s.length === 0 ? NaN : s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const f = (x, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : '–');
const size = (b) => (b >= 1024 * MiB ? `${f(b / 1024 / MiB, 2)} GiB` : b >= MiB ? `${f(b / MiB, 1)} MiB` : `${f(b / 1024, 0)} KiB`);

/** Pairwise ratios r2d1/peer for one (server, workload, direction): per rep, then median [min–max]. */
function ratios(recs, peer) {
  const out = [];
  for (const rep of new Set(recs.map((r) => r.rep))) {
    const a = recs.find((r) => r.rep === rep && r.pair === peer && r.contender === 'r2d1');
    const b = recs.find((r) => r.rep === rep && r.pair === peer && r.contender === peer);
    if (a?.ok && b?.ok) out.push(a.mibps / b.mibps);
  }
  return out;
}
const spread = (xs) => (xs.length ? `${f(median(xs), 2)}× [${f(Math.min(...xs), 2)}–${f(Math.max(...xs), 2)}]` : '–');

function throughputTable(run, server) {
  const recs = run.records.filter((r) => r.server === server);
  const peers = PEERS.filter((p) => recs.some((r) => r.contender === p));
  const lines = [
    `| workload | dir | ${['r2d1', ...peers].map((c) => `${PEER_NAME[c]} MiB/s`).join(' | ')} | ${peers.map((p) => `r2d1 / ${PEER_NAME[p]}`).join(' | ')} |`,
    `|---|---|${['r2d1', ...peers].map(() => '---:').join('|')}|${peers.map(() => '---:').join('|')}|`,
  ];
  for (const w of Object.keys(run.workloads)) {
    for (const dir of ['ship', 'pull']) {
      const rs = recs.filter((r) => r.workload === w && r.direction === dir);
      if (!rs.length) continue;
      const cell = (c) => {
        const xs = rs.filter((r) => r.contender === c);
        const okx = xs.filter((r) => r.ok).map((r) => r.mibps);
        const failed = xs.length - okx.length;
        return `${f(median(okx))}${failed ? ` (${failed} failed)` : ''}`;
      };
      lines.push(`| (${w}) | ${dir} | ${['r2d1', ...peers].map(cell).join(' | ')} | ${peers.map((p) => spread(ratios(rs, p))).join(' | ')} |`);
    }
  }
  return lines.join('\n');
}

function resourceTable(run, server) {
  const recs = run.records.filter((r) => r.server === server && r.ok);
  const cs = ['r2d1', ...PEERS].filter((c) => recs.some((r) => r.contender === c));
  const lines = [
    `| workload | dir | ${cs.map((c) => `${PEER_NAME[c]} peak RSS MiB`).join(' | ')} | ${cs.map((c) => `${PEER_NAME[c]} CPU s/GiB`).join(' | ')} |`,
    `|---|---|${cs.map(() => '---:').join('|')}|${cs.map(() => '---:').join('|')}|`,
  ];
  for (const w of Object.keys(run.workloads)) {
    for (const dir of ['ship', 'pull']) {
      const rs = recs.filter((r) => r.workload === w && r.direction === dir);
      if (!rs.length) continue;
      const rss = (c) => {
        const xs = rs.filter((r) => r.contender === c).map((r) => r.maxRssMiB);
        return xs.length ? `${f(median(xs), 0)} (max ${f(Math.max(...xs), 0)})` : '–';
      };
      const cpu = (c) => f(median(rs.filter((r) => r.contender === c).map((r) => r.cpuSecPerGiB)), 1);
      lines.push(`| (${w}) | ${dir} | ${cs.map(rss).join(' | ')} | ${cs.map(cpu).join(' | ')} |`);
    }
  }
  return lines.join('\n');
}

/** Checks the issue's targets against what was measured; "not measured" where a run is missing. */
function targets(runs) {
  const rows = [];
  const find = (cond, server) => runs.find((r) => r.condition === cond && r.records.some((x) => x.server === server));
  const ratioCheck = (label, cond, server, dir, ws, peers, min) => {
    const run = find(cond, server);
    const parts = [];
    let met = true;
    let any = false;
    for (const w of ws) {
      for (const p of peers) {
        const xs = run ? ratios(run.records.filter((r) => r.server === server && r.workload === w && r.direction === dir), p) : [];
        if (!xs.length) continue;
        any = true;
        const m = median(xs);
        if (!(m >= min)) met = false;
        parts.push(`(${w}) vs ${PEER_NAME[p]} ${f(m, 2)}×`);
      }
    }
    rows.push(`| ${label} | ${any ? (met ? 'met' : '**missed**') : 'not measured'} | ${parts.join(', ') || '–'} |`);
  };
  ratioCheck('ship ≥ 1.2× aws-cli, rclone on (a),(b), radosgw loopback', 'loopback', 'radosgw', 'ship', ['a', 'b'], ['aws', 'rclone'], 1.2);
  ratioCheck('ship ≥ 1.2× aws-cli, rclone on (a),(b), WAN', 'wan', 'radosgw', 'ship', ['a', 'b'], ['aws', 'rclone'], 1.2);
  ratioCheck('pull ≥ 1.0× aws-cli, rclone on (a),(b),(c), radosgw loopback', 'loopback', 'radosgw', 'pull', ['a', 'b', 'c'], ['aws', 'rclone'], 1.0);
  ratioCheck('pull ≥ 1.0× aws-cli, rclone on (a),(b),(c), WAN', 'wan', 'radosgw', 'pull', ['a', 'b', 'c'], ['aws', 'rclone'], 1.0);
  for (const dir of ['ship', 'pull']) ratioCheck(`${dir} ≥ 3× the original's approach (boto3), WAN`, 'wan', 'radosgw', dir, ['a', 'b', 'c'], ['boto3'], 3);
  {
    const xs = runs.flatMap((r) => r.records.filter((x) => x.ok && x.contender === 'r2d1' && x.direction === 'ship' && x.workload === 'a' && x.bytes >= 1024 * MiB));
    const peak = xs.length ? Math.max(...xs.map((x) => x.maxRssMiB)) : NaN;
    rows.push(`| peak RSS of r2d1 ship ≤ 256 MiB on (a) | ${xs.length ? (peak <= 256 ? 'met' : '**missed**') : 'not measured (full-size (a) only)'} | ${xs.length ? `max ${f(peak, 0)} MiB over ${xs.length} runs` : '–'} |`);
  }
  {
    const ds = runs.flatMap((r) => r.detection.map((d) => ({ ...d, condition: r.condition })));
    const parts = ds.map((d) => `${d.server}/${d.condition} ${f(median(d.samplesMs), 0)} ms`);
    const met = ds.length && ds.every((d) => median(d.samplesMs) <= 1000);
    rows.push(`| detection latency ≤ 1 s median | ${ds.length ? (met ? 'met' : '**missed**') : 'not measured'} | ${parts.join(', ') || '–'} |`);
  }
  return ['| target | status | measured (median of pairwise ratios) |', '|---|---|---|', ...rows].join('\n');
}

export function renderReport(runs) {
  const out = [];
  const quick = runs.some((r) => r.options?.quick);
  out.push('# r2d1 benchmarks', '');
  out.push(
    quick
      ? '**Quick run** (`npm run bench -- --quick`): tens of MB and one repetition, to check that the harness works. The figures mean little.'
      : 'Produced by `npm run bench` (harness: [bench/run.mjs](bench/run.mjs)); this file is rewritten by each run, from `bench/results/*.json`.',
    '',
    'Every figure is wall-clock time of the whole command (process start to exit, so start-up counts) over the bytes of the workload. ' +
      'Each peer is measured **pairwise** against r2d1 in the same run, interleaved (r2d1 then peer, then peer then r2d1 on the next repetition), ' +
      'and a ratio is r2d1 MiB/s ÷ peer MiB/s of one pair; ratios are given as median [min–max] over repetitions. MiB/s columns are medians ' +
      '(r2d1 runs once per pair, so it has three times as many runs). Peak RSS and CPU seconds (user + system) come from GNU `time -v` around each command.',
    '',
  );
  const noisy = runs.find((r) => r.machine);
  if (noisy) {
    const m = noisy.machine;
    out.push('## Machine', '');
    out.push(`- ${m.cpu}, ${m.memGiB} GiB RAM, ${m.kernel}; Node ${m.node}; r2d1 ${m.r2d1} (git ${m.git}).`);
    out.push(`- Peers: ${m.aws}; ${m.rclone}; ${m.boto3} (Debian's python3-boto3); server ${m.radosgw} (memstore OSD, data in RAM) and miniflare (its R2 S3 endpoint).`);
    out.push('- **Noise:** a 2-core VM on shared hardware; client, server (and proxy) share the same two cores, so a client that spends less CPU leaves more to the server. ' +
      'Absolute MiB/s are therefore low and noisy; the pairwise ratios are the figures to read.', '');
  }
  out.push('## Targets', '', targets(runs), '');
  for (const run of runs) {
    const o = run.options ?? {};
    const cond = run.condition === 'wan' ? `WAN-like link (${o.wanRate} token bucket on the client↔proxy port, +${o.wanDelay} ms each way by a TCP proxy; network namespace)` : 'plain loopback';
    out.push(`## ${run.condition === 'wan' ? 'WAN' : 'Loopback'}: ${cond}`, '');
    out.push(`Run ${run.started} → ${run.finished}; ${o.reps} repetition(s) per pair; \`${o.argv || '(defaults)'}\`.`, '');
    out.push('Workloads: ' + Object.entries(run.workloads).map(([w, d]) => `(${w}) ${d.title}: ${d.files} files, ${size(d.bytes)} (largest ${size(d.largest)})`).join('; ') + '. Random, incompressible bytes.', '');
    for (const server of new Set(run.records.map((r) => r.server))) {
      out.push(`### ${server}: throughput`, '', throughputTable(run, server), '');
      out.push(`### ${server}: peak RSS and CPU per GiB`, '', resourceTable(run, server), '');
    }
    if (run.detection.length) {
      out.push('### Detection latency', '', 'Sidecar written → its version\'s manifest listed in the bucket (`r2d1 watch`; small checkpoint of 2 files, 1 MiB; listing polled every 10 ms).', '');
      out.push('| server | events | median ms | min ms | max ms |', '|---|---:|---:|---:|---:|');
      for (const d of run.detection) out.push(`| ${d.server} | ${d.samplesMs.length} | ${f(median(d.samplesMs), 0)} | ${f(Math.min(...d.samplesMs), 0)} | ${f(Math.max(...d.samplesMs), 0)} |`);
      out.push('');
    }
    for (const n of run.notes ?? []) out.push(`Note: ${n}`, '');
    const failed = run.records.filter((r) => !r.ok);
    if (run.errors.length || failed.length) {
      out.push('### Failures', '');
      for (const e of run.errors) out.push(`- ${e.split('\n')[0]}`);
      for (const r of failed) out.push(`- ${r.server} (${r.workload}) ${r.direction} ${r.contender} rep ${r.rep}: ${r.error}`);
      out.push('');
    }
  }
  const cmds = runs.find((r) => r.commands)?.commands ?? {};
  out.push('## Exact commands', '');
  out.push('```bash', 'npm run bench                                   # full run: loopback, radosgw, (a)(b)(c), 3 repetitions (root; ~40 min here)',
    'npm run bench -- --conditions loopback,wan      # also the WAN condition (root: network namespace + tc)',
    'npm run bench -- --quick                        # tens of MB, one repetition, radosgw + miniflare: a check that the harness works',
    '# the figures above come from these runs (each condition rewrites bench/results/<condition>.json):',
    ...runs.map((run) => `node bench/run.mjs ${run.options?.argv ?? ''}`.trim()),
    '# tuning sweeps (see Findings): against a running radosgw, R2D1_R2_* set',
    "node bench/tune.mjs ship|pull /tmp/r2d1-bench/src/a-full-1 --grid 'partMiB=8,16,32;inFlight=4,8;files=8;bigFiles=2' --gc 'radosgw-admin -c CONF gc process --include-all'",
    '```', '');
  out.push('What each contender runs (`ship` uploads the folder `slot/`; r2d1 is given its parent, which holds `slot.json`; `pull` downloads the version r2d1 shipped, peers by its key prefix):', '');
  out.push('```');
  for (const [k, v] of Object.entries(cmds).sort()) out.push(`${k.padEnd(12)} ${v}`);
  out.push('```', '');
  out.push('Configuration: r2d1 through `R2D1_R2_ENDPOINT_URL`, `R2D1_R2_BUCKET`, `R2D1_R2_ACCESS_KEY`, `R2D1_R2_SECRET_KEY` (R2-only mode); ' +
    'aws-cli with `addressing_style = path`; rclone with an `s3` remote from `RCLONE_CONFIG_BENCH_*` (provider Other, path style, ' +
    '`AWS_CA_BUNDLE` unset); boto3 with path-style addressing. Every tool runs with its default concurrency and part size.', '');
  const findings = path.join(HERE, 'findings.md');
  if (!quick && fs.existsSync(findings)) out.push(fs.readFileSync(findings, 'utf8').trim(), '');
  return `${out.join('\n')}\n`;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const dir = path.join(HERE, 'results');
  const runs = fs.readdirSync(dir).filter((x) => x.endsWith('.json')).sort().map((x) => JSON.parse(fs.readFileSync(path.join(dir, x), 'utf8')));
  fs.writeFileSync(path.join(HERE, '..', 'BENCHMARKS.md'), renderReport(runs));
}
