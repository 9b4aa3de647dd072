/**
 * End-to-end tests of the GitHub Action as the runner runs it: the bundles dist/main/index.js and
 * dist/post/index.js (built by `npm run bundle`) under Node 24, one process per step, inputs as
 * INPUT_* variables with action.yml's defaults, the runner's file commands for outputs, state,
 * exported variables and the job summary (see ./helpers/action.ts). Against the miniflare rig.
 *
 * Every courier a step starts is stopped by the test's flush/post step; afterEach kills (by pid)
 * any that a failing test left behind, and fails the test if one was still running.
 */
import { existsSync, readFileSync, realpathSync } from 'node:fs';
import { mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { join, sep } from 'node:path';
import { GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { Inputs, Modes, Outputs, State, CourierDirEnv } from '../src/action/constants.js';
import { d1Query, rig, rigEnv, uniqueJobId } from './rig/rig.js';
import { cliEnv, closedPort, listKeys, rigS3, runCli, show as showCli, writeCheckpoint } from './helpers/cli.js';
import {
  ActionJob,
  ENTRY,
  NODE24,
  courierDirs,
  courierPids,
  expectFailed,
  expectSucceeded,
  hashTree,
  isAlive,
  killEverything,
  readActionYml,
  readCourierInfo,
  removeTemps,
  runTraining,
  show,
  sleep,
  summaryTableRows,
  tempDir,
  waitFor,
  type StepResult,
} from './helpers/action.js';

let s3: S3Client;
const started = Date.now();

beforeAll(() => {
  for (const file of [NODE24, ENTRY.main, ENTRY.post, join(ENTRY.main, '..', '..', 'cli', 'index.js')]) {
    if (!existsSync(file)) throw new Error(`${file} is missing: run \`npm run build && npm run bundle\``);
  }
  s3 = rigS3();
});

afterEach(async () => {
  const leaked = await killEverything();
  if (leaked.length > 0) throw new Error(`courier process(es) ${leaked.join(', ')} were still running after the test (killed)`);
});

afterAll(async () => {
  await killEverything();
  s3?.destroy();
  await removeTemps();
  if (process.env.R2D1_TEST_TIMING) console.log(`action.test.ts: ${((Date.now() - started) / 1000).toFixed(1)} s`);
});

// ---------------------------------------------------------------- helpers

const r = () => rig();
/** The credentials as the action's inputs (R2D1_D1_API_URL has no input: the rig's D1 is not api.cloudflare.com). */
const credentialInputs = () => ({
  'account-id': r().accountId,
  bucket: r().bucket,
  'access-key-id': r().accessKeyId,
  'secret-access-key': r().secretAccessKey,
  endpoint: r().s3Endpoint,
  'api-token': r().apiToken,
  'd1-database-id': r().databaseId,
});
const secrets = () => [r().accessKeyId, r().secretAccessKey, r().apiToken];

/** Each secret is first printed as `::add-mask::<secret>`, and nowhere else on stdout or stderr. */
function expectMasked(result: StepResult, values: string[]): void {
  for (const secret of values) {
    const mask = `::add-mask::${secret}`;
    const maskAt = result.stdout.indexOf(mask);
    if (maskAt < 0) throw new Error(`no ${mask} on stdout: ${show(result)}`);
    expect(result.stdout.indexOf(secret)).toBe(maskAt + '::add-mask::'.length);
    const rest = result.stdout
      .split('\n')
      .filter((line) => line !== mask)
      .join('\n');
    if (rest.includes(secret) || result.stderr.includes(secret)) throw new Error(`a secret is printed outside ::add-mask::: ${show(result)}`);
  }
}

async function getObject(key: string): Promise<Buffer> {
  const out = await s3.send(new GetObjectCommand({ Bucket: rig().bucket, Key: key }));
  return Buffer.from(await out.Body!.transformToByteArray());
}

async function manifestKeys(jobId: string): Promise<string[]> {
  return (await listKeys(`jobs/${jobId}/`, s3)).filter((k) => k.endsWith('.manifest.json')).sort();
}

interface Row {
  name: string;
  epoch: number;
  key: string;
}

/** The flush report's table in a job summary: checkpoint, epoch, R2 key per row. */
function shippedRows(result: StepResult): Row[] {
  const rows = summaryTableRows(result.summary);
  if (rows.length === 0) throw new Error(`no table in the job summary: ${show(result)}`);
  expect(rows[0]).toEqual(['checkpoint', 'epoch', 'size', 'duration', 'R2 key']);
  return rows.slice(1).map((cells) => ({ name: cells[0]!, epoch: Number(cells[1]), key: cells[4]! }));
}

/** Every row of the summary is a committed version (manifest in the bucket) holding exactly the files the trainer wrote. */
async function expectRowsCommitted(jobId: string, rows: Row[], ledger: { name: string; epoch: number; files: Record<string, string> }[]): Promise<void> {
  for (const row of rows) {
    expect(row.key).toMatch(new RegExp(`^jobs/${jobId}/${row.name}/[^/]+/$`));
    const manifest = JSON.parse((await getObject(`${row.key.slice(0, -1)}.manifest.json`)).toString('utf8')) as {
      name: string;
      epoch: number;
      files: { path: string; sha256: string }[];
    };
    expect(manifest).toMatchObject({ name: row.name, epoch: row.epoch });
    const written = ledger.find((e) => e.name === row.name && e.epoch === row.epoch);
    if (!written) throw new Error(`the summary reports ${row.name} epoch ${row.epoch}, which the trainer never wrote`);
    expect(Object.fromEntries(manifest.files.map((f) => [f.path, f.sha256]))).toEqual(written.files);
  }
}

/** The newest version of each slot the trainer wrote. */
function finalVersions(ledger: { name: string; epoch: number }[]): Map<string, number> {
  const out = new Map<string, number>();
  for (const e of ledger) out.set(e.name, e.epoch);
  return out;
}

function courierOf(start: StepResult): { stateDir: string; pid: number } {
  const stateDir = start.state[State.CourierDir];
  if (!stateDir) throw new Error(`watch-start saved no ${State.CourierDir} state: ${show(start)}`);
  const info = readCourierInfo(stateDir);
  if (!info) throw new Error(`no courier.json in ${stateDir}: ${show(start)}`);
  return { stateDir, pid: info.pid };
}

const courierGone = (pid: number) => waitFor(`courier ${pid} to exit`, () => !isAlive(pid), 10_000);

/** Process group and session of a live process, from /proc/<pid>/stat. */
function groupAndSession(pid: number): { pgid: number; sid: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { pgid: Number(fields[2]), sid: Number(fields[3]) };
}

function sigint(target: number): void {
  try {
    process.kill(target, 'SIGINT');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
  }
}

// ---------------------------------------------------------------- action.yml

describe('action.yml', () => {
  it('runs the bundles on node24, with a post step that always runs', () => {
    const yml = readActionYml();
    expect(yml.runs).toEqual({ using: 'node24', main: 'dist/main/index.js', post: 'dist/post/index.js', 'post-if': 'always()' });
  });

  it('declares exactly the inputs and outputs the code reads and sets; mode is required, the rest have defaults', () => {
    const yml = readActionYml();
    expect(Object.keys(yml.inputs).sort()).toEqual(Object.values(Inputs).sort());
    expect(Object.keys(yml.outputs).sort()).toEqual(Object.values(Outputs).sort());
    expect(yml.inputs.mode!.required).toBe('true');
    expect(yml.inputs.mode!.default).toBeUndefined();
    for (const [name, spec] of Object.entries(yml.inputs)) {
      if (name !== 'mode') expect({ name, default: spec.default }).toEqual({ name, default: expect.any(String) });
    }
    for (const mode of Modes) expect(yml.inputs.mode!.description).toContain(mode);
  });
});

// ---------------------------------------------------------------- pull

describe('mode pull', () => {
  it('fresh start: found=false; after a ship: found, epoch, name, local-dir, bytes, byte-identical; again: cached', async () => {
    const job = await ActionJob.create(rigEnv());
    const jobId = uniqueJobId('act-pull');
    const source = `r2://jobs/${jobId}/latest`;
    const dest = join(job.workspace, 'restored');

    const fresh = expectSucceeded(await job.step({ mode: 'pull', source, path: dest }));
    expect(fresh.outputs).toMatchObject({ found: 'false', cached: 'false' });
    expect(fresh.stdout).toMatch(/fresh start/);
    expectMasked(fresh, secrets()); // credentials from R2D1_* variables are masked too

    const out = await tempDir();
    await writeCheckpoint(out, 'older', 3, { 'model.bin': 10_000 });
    const ck = await writeCheckpoint(out, 'best', 7, { 'model.bin': 300_000, 'tok/vocab.txt': 1234, 'empty.bin': 0 });
    const shipped = await runCli(['ship', out, '--job-id', jobId], { env: cliEnv(rigEnv()), cwd: out });
    if (shipped.code !== 0) throw new Error(`ship failed: ${showCli(shipped)}`);

    const pulled = expectSucceeded(await job.step({ mode: 'pull', source, path: dest }));
    expect(pulled.outputs).toEqual({
      found: 'true',
      epoch: '7',
      name: 'best',
      'local-dir': join(dest, 'best'),
      bytes: String(300_000 + 1234),
      cached: 'false',
    });
    expect(await hashTree(join(dest, 'best'))).toEqual(ck.hashes);
    expect(await readFile(join(dest, 'best.json'), 'utf8')).toBe(ck.sidecar);

    const again = expectSucceeded(await job.step({ mode: 'pull', source, path: dest }));
    expect(again.outputs).toEqual({ ...pulled.outputs, cached: 'true' });
    expect(await hashTree(join(dest, 'best'))).toEqual(ck.hashes);
  });

  it('takes the credentials as inputs instead of variables, and masks the secret ones before anything else is printed', async () => {
    const job = await ActionJob.create({ R2D1_D1_API_URL: rig().d1ApiUrl });
    const jobId = uniqueJobId('act-inputs');
    const out = await tempDir();
    const ck = await writeCheckpoint(out, 'ck', 2, { 'w.bin': 5000 });
    const shipped = await runCli(['ship', out, '--job-id', jobId], { env: cliEnv(rigEnv()), cwd: out });
    if (shipped.code !== 0) throw new Error(`ship failed: ${showCli(shipped)}`);

    const pulled = expectSucceeded(await job.step({ mode: 'pull', source: `r2://jobs/${jobId}/ck`, path: 'ckpt', ...credentialInputs() }));
    expect(Object.keys(pulled.env).filter((k) => k.startsWith('R2D1_'))).toEqual(['R2D1_D1_API_URL']);
    expect(pulled.outputs).toMatchObject({ found: 'true', name: 'ck', epoch: '2', cached: 'false' });
    expect(pulled.outputs['local-dir']).toBe(join(realpathSync(job.workspace), 'ckpt', 'ck'));
    expect(await hashTree(join(job.workspace, 'ckpt', 'ck'))).toEqual(ck.hashes);
    expect(pulled.stdout).not.toMatch(/R2-only/); // api-token and d1-database-id inputs configure D1
    expectMasked(pulled, secrets());
  });
});

// ---------------------------------------------------------------- watch-start, flush, post

describe('mode watch-start, then flush', () => {
  it('ships every checkpoint the training writes; flush reports them in the job summary and stops the courier; post then does nothing', async () => {
    const job = await ActionJob.create(rigEnv());
    const jobId = uniqueJobId('act-flush');
    const start = expectSucceeded(await job.step({ mode: 'watch-start', path: 'checkpoints', 'job-id': jobId, 'poll-every': '2', keep: '5' }));
    const { stateDir, pid } = courierOf(start);
    expect(stateDir.startsWith(job.runnerTemp + sep)).toBe(true);
    expect(start.exported[CourierDirEnv]).toBe(stateDir);
    expect(start.stdout).toContain(`courier started (pid ${pid})`);
    expect(readCourierInfo(stateDir)).toMatchObject({ jobId, dir: 'checkpoints' });
    expect(isAlive(pid)).toBe(true);

    const training = await runTraining(join(job.workspace, 'checkpoints'), [
      { name: 'slot_0', epoch: 1 },
      { name: 'slot_1', epoch: 2 },
      { name: 'slot_0', epoch: 3 },
      { name: 'slot_1', epoch: 4, bytes: 200_000 }, // written just before flush: the final scan ships it
    ]);
    expect(training.code).toBe(0);

    const flush = expectSucceeded(await job.step({ mode: 'flush', timeout: '60' }));
    expect(flush.summary).toContain('<h3>r2d1 flush</h3>');
    const rows = shippedRows(flush);
    const final = finalVersions(training.ledger);
    for (const [name, epoch] of final) expect(rows).toContainEqual(expect.objectContaining({ name, epoch }));
    await expectRowsCommitted(jobId, rows, training.ledger);
    // keep: 5 keeps every committed version: the summary names exactly what is committed.
    expect(await manifestKeys(jobId)).toEqual(rows.map((row) => `${row.key.slice(0, -1)}.manifest.json`).sort());
    for (const row of rows) expect(flush.stdout).toContain(`shipped ${row.name} epoch ${row.epoch}`);

    // The newest of each slot pulls back byte-identical, and D1 has its row.
    for (const [name, epoch] of final) {
      const pulled = expectSucceeded(await job.step({ mode: 'pull', source: `r2://jobs/${jobId}/${name}`, path: 'restored' }));
      expect(pulled.outputs).toMatchObject({ found: 'true', name, epoch: String(epoch) });
      expect(await hashTree(join(job.workspace, 'restored', name))).toEqual(await hashTree(join(job.workspace, 'checkpoints', name)));
    }
    expect(await d1Query('SELECT name, epoch FROM checkpoints WHERE job_id = ? ORDER BY name', [jobId])).toEqual([
      { name: 'slot_0', epoch: 3 },
      { name: 'slot_1', epoch: 4 },
    ]);

    await courierGone(pid);

    const post = expectSucceeded(await job.post(start));
    expect(post.stdout).toMatch(/already flushed/);
    expect(post.summary).toBe('');
    expect(await manifestKeys(jobId)).toHaveLength(rows.length);
  });
});

describe('post of watch-start when no flush step ran', () => {
  it('training failed: post flushes everything (credentials as inputs), writes the summary, exits 0', async () => {
    const job = await ActionJob.create({ R2D1_D1_API_URL: rig().d1ApiUrl });
    const jobId = uniqueJobId('act-post');
    const start = expectSucceeded(await job.step({ mode: 'watch-start', path: 'ckpt', 'job-id': jobId, ...credentialInputs() }));
    expectMasked(start, secrets());
    const { pid } = courierOf(start);

    const training = await runTraining(
      join(job.workspace, 'ckpt'),
      [
        { name: 'slot_0', epoch: 10 },
        { name: 'slot_1', epoch: 11 },
        { name: 'slot_0', epoch: 12 },
      ],
      { exitCode: 1, pauseMs: 50 },
    );
    expect(training.code).toBe(1);

    const post = expectSucceeded(await job.post(start));
    expectMasked(post, secrets());
    expect(post.summary).toMatch(/<h3>[^<]*post-job flush[^<]*<\/h3>/);
    const rows = shippedRows(post);
    const final = finalVersions(training.ledger);
    for (const [name, epoch] of final) expect(rows).toContainEqual(expect.objectContaining({ name, epoch }));
    await expectRowsCommitted(jobId, rows.filter((row) => final.get(row.name) === row.epoch), training.ledger);
    // keep defaults to 1: one committed version per slot, the newest.
    const keys = await manifestKeys(jobId);
    expect(keys).toHaveLength(2);
    for (const [name, epoch] of final) {
      const row = rows.find((x) => x.name === name && x.epoch === epoch)!;
      expect(keys).toContain(`${row.key.slice(0, -1)}.manifest.json`);
    }
    await courierGone(pid);
  });

  it('a checkpoint that cannot ship (sidecar still malformed, symlink out of the folder): post fails naming each', async () => {
    const job = await ActionJob.create(rigEnv());
    const jobId = uniqueJobId('act-postfail');
    const dir = join(job.workspace, 'ckpt');
    const start = expectSucceeded(await job.step({ mode: 'watch-start', path: 'ckpt', 'job-id': jobId, timeout: '20' }));
    const { pid } = courierOf(start);

    const good = await writeCheckpoint(dir, 'good', 1, { 'w.bin': 4000 });
    await mkdir(join(dir, 'broken'), { recursive: true });
    await writeFile(join(dir, 'broken', 'w.bin'), 'x');
    await writeFile(join(dir, 'broken.json'), '{"name": "broken", "epoch": 2, "files": ["w.bin"'); // never completed
    const outside = await tempDir();
    await writeFile(join(outside, 'secret.txt'), 'not part of any checkpoint');
    await mkdir(join(dir, 'linked'), { recursive: true });
    await writeFile(join(dir, 'linked', 'w.bin'), 'y');
    await symlink(join(outside, 'secret.txt'), join(dir, 'linked', 'leak.txt'));
    await writeFile(join(dir, 'linked.json'), JSON.stringify({ name: 'linked', epoch: 3, timestamp: Date.now() / 1000, metadata: {} }));

    const post = await job.post(start);
    const message = expectFailed(post);
    expect(post.ms).toBeLessThan(20_000);
    expect(message).toMatch(/\bbroken\b/);
    expect(message).toMatch(/\blinked\b/);
    expect(message).toMatch(/symlink.*outside/);
    expect(message).not.toMatch(/\bgood\b/);
    expect(post.summary).toMatch(/post-job flush/);
    expect(post.summary).toMatch(/NOT shipped/);
    expect(post.summary).toContain('broken');
    expect(post.summary).toContain('linked');
    expect(shippedRows(post)).toContainEqual(expect.objectContaining({ name: 'good', epoch: 1 }));

    const pulled = expectSucceeded(await job.step({ mode: 'pull', source: `r2://jobs/${jobId}/good`, path: 'back' }));
    expect(pulled.outputs).toMatchObject({ found: 'true', epoch: '1' });
    expect(await hashTree(join(job.workspace, 'back', 'good'))).toEqual(good.hashes);
    expect((await manifestKeys(jobId)).filter((k) => !k.startsWith(`jobs/${jobId}/good/`))).toEqual([]);
    await courierGone(pid);
  });
});

// ---------------------------------------------------------------- cancellation

describe('SIGINT to the step that started the courier', () => {
  async function expectCourierSurvivesAndShips(job: ActionJob, start: StepResult, jobId: string): Promise<void> {
    const { stateDir, pid } = courierOf(start);
    await sleep(1000); // a courier that got the SIGINT would be flushing and exiting by now
    if (!isAlive(pid)) throw new Error(`the courier died after SIGINT to its starter; its log:\n${readFileSync(join(stateDir, 'courier.log'), 'utf8')}`);
    expect(existsSync(join(stateDir, 'report.json'))).toBe(false);
    expect(readFileSync(join(stateDir, 'courier.log'), 'utf8')).not.toMatch(/SIGINT/);

    const ck = await writeCheckpoint(join(job.workspace, 'ckpt'), 'after_sigint', 5, { 'w.bin': 70_000 });
    const flush = expectSucceeded(await job.step({ mode: 'flush', timeout: '60' }));
    expect(shippedRows(flush)).toContainEqual(expect.objectContaining({ name: 'after_sigint', epoch: 5 }));
    const pulled = expectSucceeded(await job.step({ mode: 'pull', source: `r2://jobs/${jobId}/latest`, path: 'back' }));
    expect(pulled.outputs).toMatchObject({ found: 'true', name: 'after_sigint', epoch: '5' });
    expect(await hashTree(join(job.workspace, 'back', 'after_sigint'))).toEqual(ck.hashes);
    await courierGone(pid);
  }

  it('right after watch-start returns: the courier is in another session and process group, keeps running, and ships', async () => {
    const job = await ActionJob.create(rigEnv());
    const jobId = uniqueJobId('act-sigint-after');
    const start = expectSucceeded(await job.step({ mode: 'watch-start', path: 'ckpt', 'job-id': jobId }));
    const { pid } = courierOf(start);
    const own = groupAndSession(pid);
    expect(own.pgid).toBe(pid);
    expect(own.sid).toBe(pid);
    // The step ran as group leader: a courier left in its group would still receive this.
    sigint(start.pid);
    sigint(-start.pid);
    await expectCourierSurvivesAndShips(job, start, jobId);
  });

  it('while watch-start is finishing (SIGINT to its pid and group once it reports the courier started)', async () => {
    const job = await ActionJob.create(rigEnv());
    const jobId = uniqueJobId('act-sigint-during');
    const handle = await job.start({ mode: 'watch-start', path: 'ckpt', 'job-id': jobId });
    await waitFor('"courier started" on stdout', () => handle.stdout.includes('courier started') || handle.child.exitCode !== null, 30_000, 5);
    sigint(handle.child.pid!);
    sigint(-handle.child.pid!);
    const start = await handle.done;
    if (start.code !== 0 && start.signal !== 'SIGINT') throw new Error(`watch-start failed: ${show(start)}`);
    expect(start.errors).toEqual([]);
    expect(job.exported[CourierDirEnv]).toBe(start.state[State.CourierDir]);
    await expectCourierSurvivesAndShips(job, start, jobId);
  });

  it('while the courier is still starting: once the post step of the cancelled step has run, no courier is left behind', async () => {
    const job = await ActionJob.create(rigEnv());
    const handle = await job.start({ mode: 'watch-start', path: 'ckpt', 'job-id': uniqueJobId('act-sigint-early') });
    // The courier process runs (in its own session) a while before it reports ready.
    await waitFor('the courier to be spawned', () => courierPids(job.runnerTemp).length > 0 || handle.child.exitCode !== null, 30_000, 2);
    const readyBeforeSigint = courierDirs(job.runnerTemp).some((d) => existsSync(join(d, 'courier.json')));
    sigint(handle.child.pid!);
    sigint(-handle.child.pid!);
    const start = await handle.done;
    // A cancelled step still gets its post step (post-if: always()): it must flush the courier, or there must be none.
    const post = await job.post(start);
    if (post.code !== 0 || post.errors.length > 0) throw new Error(`post failed: ${show(post)}`);
    await waitFor('no courier left running', () => courierPids(job.runnerTemp).length === 0, 5_000).catch(() => {
      const pids = courierPids(job.runnerTemp);
      throw new Error(
        `courier ${pids.join(', ')} is still running after the watch-start step was cancelled (${start.signal ?? `exit ${start.code}`}) ` +
          `and its post step ran: the step saved state ${JSON.stringify(start.state)}, exported ${JSON.stringify(start.exported)}, ` +
          `so nothing will ever flush or stop it (SIGINT was sent ${readyBeforeSigint ? 'after' : 'before'} it reported ready)`,
      );
    });
  });
});

// ---------------------------------------------------------------- errors

describe('failed steps', () => {
  it('an unknown mode fails naming the input and the modes', async () => {
    const job = await ActionJob.create(rigEnv());
    const message = expectFailed(await job.step({ mode: 'push', path: 'ckpt', 'job-id': uniqueJobId('act-mode') }));
    expect(message).toContain('input "mode"');
    expect(message).toContain('"push"');
    for (const mode of ['pull', 'watch-start', 'flush']) expect(message).toContain(mode);
    expect(courierDirs(job.runnerTemp)).toEqual([]);
  });

  it('without credentials (no variables, no inputs) pull and watch-start fail naming the inputs; no courier starts', async () => {
    const job = await ActionJob.create({});
    const pull = await job.step({ mode: 'pull', source: `r2://jobs/${uniqueJobId('act-nocred')}/latest`, path: 'ckpt' });
    const watch = await job.step({ mode: 'watch-start', path: 'ckpt', 'job-id': uniqueJobId('act-nocred') });
    for (const result of [pull, watch]) {
      const message = expectFailed(result);
      for (const input of ['bucket', 'access-key-id', 'secret-access-key', 'account-id']) expect(message).toContain(`input "${input}"`);
      expect(result.outputs).toEqual({});
      expect(result.state).toEqual({});
      expect(result.exported).toEqual({});
    }
    expect(courierDirs(job.runnerTemp)).toEqual([]);
    expect(courierPids(job.runnerTemp)).toEqual([]);
  });

  it('an unreachable endpoint (input over variable) fails pull promptly, naming it; never a fresh start', async () => {
    const job = await ActionJob.create(rigEnv());
    const port = await closedPort();
    const result = await job.step(
      { mode: 'pull', source: `r2://jobs/${uniqueJobId('act-down')}/latest`, path: 'ckpt', endpoint: `http://127.0.0.1:${port}` },
      { timeoutMs: 45_000 },
    );
    const message = expectFailed(result);
    expect(result.ms).toBeLessThan(30_000);
    expect(message).toContain(`127.0.0.1:${port}`);
    expect(result.outputs.found).toBeUndefined();
    expect(result.stdout).not.toMatch(/fresh start/);
  }, 60_000);

  it('flush with no courier started in the job fails with a clear message', async () => {
    const job = await ActionJob.create(rigEnv());
    const message = expectFailed(await job.step({ mode: 'flush' }));
    expect(message).toMatch(/no courier is running/);
    expect(message).toContain(CourierDirEnv);
    expect(message).toContain('watch-start');
  });

  it.each([
    ['poll-every', 'watch-start', 'soon'],
    ['poll-every', 'watch-start', '0'],
    ['keep', 'watch-start', 'all'],
    ['keep', 'watch-start', '1.5'],
    ['timeout', 'watch-start', '5m'],
    ['timeout', 'flush', 'forever'],
  ])('%s in %s: %j fails naming the input, and starts nothing', async (input, mode, value) => {
    const job = await ActionJob.create(rigEnv());
    const result = await job.step({ mode, path: 'ckpt', 'job-id': uniqueJobId('act-num'), [input]: value });
    const message = expectFailed(result);
    expect(message).toContain(`input "${input}"`);
    expect(message).toContain(JSON.stringify(value));
    expect(courierDirs(job.runnerTemp)).toEqual([]);
    expect(result.exported).toEqual({});
  });
});
