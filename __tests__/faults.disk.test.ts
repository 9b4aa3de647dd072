/**
 * The disk side of shipping: every kind of broken or odd checkpoint folder in one directory shipped by
 * the CLI (run as an unprivileged user when the tests run as root, so file permissions apply), a file
 * shrinking while it uploads, a folder deleted while its checkpoint ships, and a symlink loop.
 *
 * Symlinks (as documented in the README): followed when they resolve inside the checkpoint folder (a
 * linked file or directory ships as regular files at the link's path); refused, naming the link, when
 * they resolve outside it or nowhere. Non-regular files (sockets, FIFOs) are skipped.
 */
import { describe, expect, it } from '@jest/globals';
import { spawn } from 'node:child_process';
import { chmod, mkdir, readFile, rm, symlink, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Courier, silentLogger, type Backends } from '../src/index.js';
import {
  hashDir,
  hookedCore,
  listKeys,
  manifestsOf,
  openCore,
  randomFile,
  sleep,
  versionFolders,
  waitFor,
  writeCheckpoint,
} from './helpers/checkpoints.js';
import { CLI_PATH, cliEnv, runCli, type CliResult } from './helpers/cli.js';
import { tally, faultScope } from './helpers/faultProxy.js';
import { rigEnv, uniqueJobId } from './rig/rig.js';

const MiB = 1024 * 1024;
const { cleanups, tempDir } = faultScope('r2d1-disk-');

function courierOn(backends: Backends): Courier {
  const courier = new Courier(backends, { logger: silentLogger, tuning: { retryBaseMs: 20, retryMaxMs: 200 } });
  cleanups.push(() => courier.close());
  return courier;
}

const NOBODY = 65534;
const asRoot = process.getuid?.() === 0;

/** `r2d1 ...` as an unprivileged user when the tests run as root (root reads files whatever their mode). */
function runCliUnprivileged(args: string[], cwd: string, env: Record<string, string>): Promise<CliResult> {
  return new Promise((resolve) => {
    const started = Date.now();
    const child = spawn(process.execPath, [CLI_PATH, ...args], {
      cwd,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(asRoot ? { uid: NOBODY, gid: NOBODY } : {}),
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, ms: Date.now() - started, timedOut: signal === 'SIGKILL' });
    });
  });
}

const names = (list: { name: string }[]) => list.map((s) => s.name).sort();

describe('a directory holding every disk hazard at once (r2d1 ship)', () => {
  it('ships exactly the usable checkpoints byte-identical, reports exactly the others with a reason each, and exits 1', async () => {
    const job = uniqueJobId('disk');
    const cwd = await tempDir();
    const dir = join(cwd, 'ckpt');
    const outside = join(cwd, 'outside');
    await mkdir(outside, { recursive: true });
    await writeFile(join(outside, 'secret.txt'), 'not part of any checkpoint');
    const env = cliEnv(rigEnv());

    // Shipped once, then its sidecar goes bad: the committed version must stay intact and pullable.
    await writeCheckpoint(dir, 'good', { epoch: 1, files: { 'model.bin': randomFile(300_000), 'nested/opt.bin': randomFile(1000) } });
    const goodHashes = await hashDir(join(dir, 'good'));
    const first = await runCli(['ship', 'ckpt', '--job-id', job, '--json'], { env, cwd });
    expect(first.code).toBe(0);

    const odd = 'ckpt ünï 模型 🚀';
    await writeCheckpoint(dir, 'zero', { epoch: 2, files: { 'empty.bin': '', 'one.bin': 'x' } });
    await writeCheckpoint(dir, 'empty', { epoch: 3, files: {} });
    await writeCheckpoint(dir, odd, { epoch: 4, files: { 'weights ä.bin': randomFile(5000), 'sub dir/日本 語.txt': 'こんにちは' } });
    // A directory symlink that stays inside: followed, its files ship (twice: real/ and alias/).
    await writeCheckpoint(dir, 'insidedir', { epoch: 5, files: { 'real/w.bin': randomFile(2000) } });
    await symlink('real', join(dir, 'insidedir', 'alias'));
    // Sidecars that cannot be used.
    await writeFile(join(dir, 'good.json'), (await readFile(join(dir, 'good.json'), 'utf8')).slice(0, 25)); // truncated
    await writeCheckpoint(dir, 'notjson', { epoch: 6, files: { 'a.bin': 'a' }, rawSidecar: 'epoch = 6\n' });
    await writeCheckpoint(dir, 'mismatch', { epoch: 7, files: { 'a.bin': 'a' }, sidecar: { name: 'someone_else' } });
    // Symlinks leading out of the folder, or nowhere.
    await writeCheckpoint(dir, 'outfile', { epoch: 8, files: { 'a.bin': 'a' } });
    await symlink(join(outside, 'secret.txt'), join(dir, 'outfile', 'leak.txt'));
    await writeCheckpoint(dir, 'outdir', { epoch: 9, files: { 'a.bin': 'a' } });
    await symlink(outside, join(dir, 'outdir', 'leakdir'));
    await writeCheckpoint(dir, 'dangling', { epoch: 10, files: { 'a.bin': 'a' } });
    await symlink(join(cwd, 'nowhere'), join(dir, 'dangling', 'broken.bin'));
    // A file nobody may read.
    await writeCheckpoint(dir, 'unreadable', { epoch: 11, files: { 'a.bin': 'a', 'locked.bin': randomFile(1000) } });
    // Not checkpoints at all: a sidecar without its folder, a folder without its sidecar.
    await writeFile(join(dir, 'orphan.json'), JSON.stringify({ name: 'orphan', epoch: 1 }));
    await mkdir(join(dir, 'nosidecar'));
    await writeFile(join(dir, 'nosidecar', 'a.bin'), 'a');

    await chmod(cwd, 0o755);
    await chmod(outside, 0o755);
    await chmod(join(dir, 'unreadable', 'locked.bin'), 0o000);
    const result = await runCliUnprivileged(['ship', 'ckpt', '--job-id', job, '--json'], cwd, env);
    expect([result.code, result.timedOut]).toEqual([1, false]);
    const report = JSON.parse(result.stdout) as { shipped: { name: string; epoch: number }[]; failed: { name: string; reason: string }[] };
    expect(names(report.shipped)).toEqual(names([{ name: 'zero' }, { name: 'empty' }, { name: odd }, { name: 'insidedir' }]));
    const reasons = Object.fromEntries(report.failed.map((f) => [f.name, f.reason]));
    expect(Object.keys(reasons).sort()).toEqual(['dangling', 'good', 'mismatch', 'notjson', 'outdir', 'outfile', 'unreadable'].sort());
    expect(reasons.good).toMatch(/good\.json.*not valid JSON/);
    expect(reasons.notjson).toMatch(/notjson\.json.*not valid JSON/);
    expect(reasons.mismatch).toMatch(/"name" is "someone_else" but the file is mismatch\.json/);
    expect(reasons.outfile).toMatch(/leak\.txt.*symlink.*outside/);
    expect(reasons.outdir).toMatch(/leakdir.*symlink.*outside/);
    expect(reasons.dangling).toMatch(/broken\.bin.*symlink/);
    expect(reasons.unreadable).toMatch(/locked\.bin/);
    expect(reasons.unreadable).toMatch(/EACCES|permission denied/);
    for (const name of ['dangling', 'mismatch', 'notjson', 'outdir', 'outfile', 'unreadable']) expect([name, await listKeys(`jobs/${job}/${name}/`)]).toEqual([name, []]);
    expect(await listKeys(`jobs/${job}/orphan/`)).toEqual([]);
    expect(await listKeys(`jobs/${job}/nosidecar/`)).toEqual([]);

    // What shipped comes back byte-identical; `good` is still its committed epoch 1.
    const back = join(cwd, 'back');
    for (const name of ['good', 'zero', 'empty', odd, 'insidedir']) {
      const pulled = await runCli(['pull', `r2://jobs/${job}/${name}`, '--dest', 'back', '--json'], { env, cwd });
      expect([name, pulled.code]).toEqual([name, 0]);
    }
    expect(await hashDir(join(back, 'good'))).toEqual(goodHashes);
    expect(JSON.parse(await readFile(join(back, 'good.json'), 'utf8')).epoch).toBe(1);
    for (const name of ['zero', 'empty', odd]) expect([name, await hashDir(join(back, name))]).toEqual([name, await hashDir(join(dir, name))]);
    const real = (await hashDir(join(dir, 'insidedir')))['real/w.bin'];
    expect(await hashDir(join(back, 'insidedir'))).toEqual({ 'alias/w.bin': real, 'real/w.bin': real });
    tally('disk', 'every disk hazard in one directory (r2d1 ship)', 'committed', { shipped: report.shipped.length, refused: report.failed.length });
  });
});

describe('files and folders changing under the courier', () => {
  it.each([
    ['a small file (one PUT)', 'small.bin'],
    ['a multipart file', 'model.bin'],
  ])('%s truncated while it uploads is detected and retried; the commit holds the final bytes, promptly', async (_what, victim) => {
    const job = uniqueJobId('shrink');
    const dir = await tempDir();
    let shrunk = false;
    const { backends } = hookedCore({
      put: async (key, _body, _size, _opts, next) => {
        if (!shrunk && key.endsWith(`/${victim}`)) {
          shrunk = true;
          // The job rewrites the file shorter just as the courier starts reading it.
          await truncate(join(dir, 'ck', victim), 1000);
        }
        return next();
      },
    });
    await writeCheckpoint(dir, 'ck', { epoch: 1, files: { 'model.bin': randomFile(9 * MiB), 'small.bin': randomFile(200_000) } });
    const started = Date.now();
    const report = await courierOn(backends).ship(dir, { jobId: job, timeout: 8 });
    const seconds = (Date.now() - started) / 1000;
    expect(shrunk).toBe(true);
    const manifests = await manifestsOf(job, 'ck');
    const final = await hashDir(join(dir, 'ck'));
    const committed = manifests.length === 1 && JSON.stringify(Object.fromEntries(manifests[0]!.manifest.files.map((f) => [f.path, { size: f.size, sha256: f.sha256 }]))) === JSON.stringify(final);
    tally('disk', `${victim} truncated while it uploads`, committed ? 'committed' : manifests.length ? 'corrupted' : 'lost', { seconds });
    expect(report.failed).toEqual([]);
    expect(report.ok).toBe(true);
    expect(committed).toBe(true);
    expect(seconds).toBeLessThan(5);
  });

  it('a folder deleted while its checkpoint ships: reported, nothing of it left in the bucket, the others ship, and it ships once it is back', async () => {
    const job = uniqueJobId('vanish');
    const dir = await tempDir();
    let struck = 0;
    const { backends } = hookedCore({
      put: async (key, _body, _size, _opts, next) => {
        // During the first upload of each: `gone` loses its folder and sidecar, `hollow` only its folder.
        if (key.includes('/gone/e1-') && struck < 2 && !key.endsWith('.manifest.json')) {
          struck++;
          await rm(join(dir, 'gone'), { recursive: true, force: true });
          await rm(join(dir, 'gone.json'), { force: true });
        }
        if (key.includes('/hollow/e1-') && !key.endsWith('.manifest.json')) await rm(join(dir, 'hollow'), { recursive: true, force: true });
        return next();
      },
    });
    const courier = courierOn(backends);
    await courier.watch(dir, { jobId: job, pollEvery: 0.3 });
    await writeCheckpoint(dir, 'gone', { epoch: 1, files: { 'a.bin': randomFile(300_000), 'b.bin': randomFile(300_000) } });
    await writeCheckpoint(dir, 'hollow', { epoch: 1, files: { 'a.bin': randomFile(300_000), 'b.bin': randomFile(300_000) } });
    await writeCheckpoint(dir, 'kept', { epoch: 1, files: { 'a.bin': randomFile(300_000) } });
    await waitFor('kept to be committed', async () => (await manifestsOf(job, 'kept')).length === 1, 8000, 50);
    await sleep(800); // a few polls see the holes

    // The job writes `gone` again: it ships.
    await writeCheckpoint(dir, 'gone', { epoch: 2, files: { 'a.bin': randomFile(1000) } });
    await waitFor('gone@2 to be committed', async () => (await manifestsOf(job, 'gone'))[0]?.manifest.epoch === 2, 8000, 50);

    const report = await courier.flush({ timeout: 10 });
    expect(report.shipped.map((s) => `${s.name}@${s.epoch}`).sort()).toEqual(['gone@2', 'kept@1']);
    expect(report.failed).toEqual([{ name: 'hollow', epoch: 1, reason: expect.stringMatching(/hollow.*(deleted|gone)/) }]);
    expect(await listKeys(`jobs/${job}/hollow/`)).toEqual([]);
    const gone = (await manifestsOf(job, 'gone'))[0]!.manifest;
    expect(await versionFolders(job, 'gone')).toEqual([gone.version]);
    expect(gone.files.map((f) => f.sha256)).toEqual([(await hashDir(join(dir, 'gone')))['a.bin']!.sha256]);
    tally('disk', 'folder deleted while it ships (then rewritten)', 'committed');
    tally('disk', 'folder deleted while it ships (never back)', 'lost', { expected: true });
  });

  it('a symlink loop inside the folder is refused promptly, with a short reason naming the link', async () => {
    const job = uniqueJobId('loop');
    const dir = await tempDir();
    await writeCheckpoint(dir, 'looped', { epoch: 1, files: { 'a.bin': 'a' } });
    await mkdir(join(dir, 'looped', 'sub'));
    await symlink('..', join(dir, 'looped', 'sub', 'up'));
    const report = await courierOn(openCore()).ship(dir, { jobId: job, timeout: 10 });
    expect(report.failed).toHaveLength(1);
    const reason = report.failed[0]!.reason;
    // Named once, by its path in the folder, as a loop (not 40 levels of sub/up/sub/up/… "outside the folder").
    expect(reason.split('sub/up').length - 1).toBe(1);
    expect(reason).toMatch(/symlink loop|loops back|cycle/i);
    expect(reason.length).toBeLessThan(400);
    expect(await listKeys(`jobs/${job}/`)).toEqual([]);
  });
});
