/**
 * The Dagger module (dagger/): each function called on the class directly, its real work (the r2d1
 * core) running against the miniflare rig, with only the Dagger objects faked at the boundary
 * (helpers/daggerFakes.ts). Then what no unit test of the class shows: the command line `train`
 * builds, run for real (the vendored CLI against the rig); the module's signatures as the SDK's
 * introspector reads them, held against the README's and the doc comments' `dagger call` examples;
 * the module type-checked against @dagger.io/dagger; and dagger/vendor/ rebuilt from the sources.
 *
 * Under jest, the module's `../vendor/core/index.js` is mapped to src/index.ts (root package.json,
 * moduleNameMapper): the functions run on the sources; the vendored bundle gets its own test below.
 */
import { afterAll, afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { Container as DaggerContainer, Directory as DaggerDirectory } from '@dagger.io/dagger';
import { CLI_PATH, CLI_SOURCE, Checkpoint, NODE_IMAGE, NODE_PATH, R2D1, ShipReport } from '../dagger/src/index.js';
import { Fetcher, describeError, parseR2Uri, silentLogger } from '../src/index.js';
import {
  asFake,
  asFakeContainer,
  fakeContainer,
  fakeDirectory,
  fakeSecret,
  FakeDirectory,
  FakeFile,
  optional,
  required,
  rigCredentials,
  useFakeBoundary,
  type ModuleCredentials,
} from './helpers/daggerFakes.js';
import { MODULE_DIR, daggerCalls, kebab, scanModule, type DaggerCall, type FunctionJson, type ModuleJson } from './helpers/daggerSignatures.js';
import { REPO_ROOT, cliEnv } from './helpers/cli.js';
import { closeS3, getObject, hashDir, listKeys, listTree, openCore, putObject, shipWithCore, writeCheckpoint, type CheckpointSpec } from './helpers/checkpoints.js';
import { d1Query, makeTempDir, rigEnv, uniqueJobId } from './rig/rig.js';

const run = promisify(execFile);
const MiB = 1024 * 1024;

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});
afterAll(() => closeS3());

async function tempDir(prefix = 'r2d1-dagger-'): Promise<string> {
  const dir = await makeTempDir(prefix);
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** A fresh scratch dir as the module's workdir, with the fake boundary installed for this test. */
async function withFakes(): Promise<{ scratch: string }> {
  const scratch = await tempDir('r2d1-dagger-scratch-');
  cleanups.push(useFakeBoundary(scratch));
  return { scratch };
}

/** Writes checkpoints into a fresh local dir and ships them with a real courier (src/). */
async function shipTrained(job: string, checkpoints: Record<string, CheckpointSpec>): Promise<string> {
  const dir = await tempDir('r2d1-dagger-train-');
  await shipWithCore(dir, job, checkpoints);
  return dir;
}

async function rejection(promise: Promise<unknown>): Promise<Error> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(Error);
  return err as Error;
}

const mod = new R2D1();
const pull = (source: string, c: ModuleCredentials = rigCredentials()) => mod.pull(source, ...required(c), ...optional(c));
const latest = (jobId: string, c: ModuleCredentials = rigCredentials()) => mod.latest(jobId, ...required(c), ...optional(c));
const ship = (dir: string, jobId: string, c: ModuleCredentials = rigCredentials()) => mod.ship(fakeDirectory(dir), jobId, ...required(c), ...optional(c));
const train = (args: string[], jobId: string, checkpointPath: string, resume: boolean, c: ModuleCredentials = rigCredentials()) =>
  mod.train(fakeContainer(), args, jobId, checkpointPath, ...required(c), resume, ...optional(c));

/** The local path behind a Directory the module returned (a FakeDirectory under the scratch dir). */
function pathOf(dir: DaggerDirectory, scratch: string): string {
  expect(dir).toBeInstanceOf(FakeDirectory);
  const path = (dir as unknown as FakeDirectory).path;
  expect(relative(scratch, path).startsWith('..')).toBe(false);
  return path;
}

describe('pull', () => {
  it('returns the latest checkpoint as a Directory: the folder and its sidecar, verified, without bookkeeping', async () => {
    const { scratch } = await withFakes();
    const job = uniqueJobId('dg-pull');
    const src = await shipTrained(job, {
      slot_0: { epoch: 3, files: { 'model.bin': Buffer.alloc(300_000, 7), 'config.json': '{"lr":0.1}' } },
      slot_1: { epoch: 5, files: { 'model.bin': Buffer.alloc(2 * MiB, 9), 'nested/opt.bin': Buffer.alloc(1000, 1) }, metadata: { loss: 0.5 } },
    });
    const creds = rigCredentials();
    const out = pathOf(await pull(`r2://jobs/${job}/latest`, creds), scratch);

    expect(await listTree(out)).toEqual(['slot_1.json', 'slot_1/', 'slot_1/model.bin', 'slot_1/nested/', 'slot_1/nested/opt.bin']);
    expect(await hashDir(join(out, 'slot_1'))).toEqual(await hashDir(join(src, 'slot_1')));
    expect(await readFile(join(out, 'slot_1.json'), 'utf8')).toBe(await readFile(join(src, 'slot_1.json'), 'utf8'));
    // Every credential was read through Secret.plaintext.
    for (const secret of [creds.accountId, creds.accessKey, creds.secretKey, creds.apiToken, creds.d1DatabaseId]) expect(asFake(secret).reads).toBe(1);
  });

  it('pulls a named slot, and mirrors a prefix', async () => {
    const { scratch } = await withFakes();
    const job = uniqueJobId('dg-slot');
    const src = await shipTrained(job, { slot_0: { epoch: 1, files: { 'a.bin': 'aaa' } }, slot_1: { epoch: 2, files: { 'b.bin': 'bbb' } } });
    const slot = pathOf(await pull(`r2://jobs/${job}/slot_0`), scratch);
    expect(await listTree(slot)).toEqual(['slot_0.json', 'slot_0/', 'slot_0/a.bin']);
    expect(await hashDir(join(slot, 'slot_0'))).toEqual(await hashDir(join(src, 'slot_0')));

    const prefix = `datasets/${uniqueJobId('dg-mirror')}`;
    await putObject(`${prefix}/train/part-0.csv`, 'x,y\n1,2\n');
    await putObject(`${prefix}/README.txt`, 'a data set');
    const mirror = pathOf(await pull(`r2://${prefix}`), scratch);
    expect(await listTree(mirror)).toEqual(['README.txt', 'train/', 'train/part-0.csv']);
    expect(await readFile(join(mirror, 'train', 'part-0.csv'), 'utf8')).toBe('x,y\n1,2\n');
  });

  it('a fresh start is an empty Directory, in R2-only mode as well', async () => {
    const { scratch } = await withFakes();
    const job = uniqueJobId('dg-fresh');
    for (const creds of [rigCredentials(), rigCredentials({ r2Only: true })]) {
      const out = pathOf(await pull(`r2://jobs/${job}/latest`, creds), scratch);
      expect(await listTree(out)).toEqual([]);
    }
  });

  it('a core error fails the call with the core message: bad credentials, a bad source, a corrupt object', async () => {
    const { scratch } = await withFakes();
    const job = uniqueJobId('dg-err');
    await shipTrained(job, { slot_0: { epoch: 1, files: { 'w.bin': 'weights' } } });

    const badKey = rigCredentials({ r2Only: true, secretKey: fakeSecret('secretKey', 'not-the-secret') });
    const expected = await rejection(new Fetcher(openCore(rigEnv({ R2D1_R2_SECRET_KEY: 'not-the-secret', R2D1_API_TOKEN: undefined, R2D1_D1_DATABASE_ID: undefined })), { logger: silentLogger }).pull(`r2://jobs/${job}/latest`, { dest: join(scratch, 'x') }));
    expect((await rejection(pull(`r2://jobs/${job}/latest`, badKey))).message).toBe(describeError(expected));

    const badSource = await rejection(pull('s3://bucket/key'));
    expect(badSource.message).toBe(describeError(await rejection(Promise.resolve().then(() => parseR2Uri('s3://bucket/key')))));

    const [manifest] = (await listKeys(`jobs/${job}/slot_0/`)).filter((k) => k.endsWith('.manifest.json'));
    await putObject(manifest!.replace('.manifest.json', '/w.bin'), 'WEIGHTS'); // same size, other bytes
    expect((await rejection(pull(`r2://jobs/${job}/latest`))).message).toMatch(/w\.bin does not match its manifest \(SHA-256 .*\)/);
  });
});

describe('latest', () => {
  it('reports the highest epoch: name, epoch, key, timestamp, metadata', async () => {
    await withFakes();
    const job = uniqueJobId('dg-latest');
    await shipTrained(job, {
      slot_0: { epoch: 3, files: { 'a.bin': 'a' } },
      slot_1: { epoch: 7, timestamp: 1748123456.7, files: { 'b.bin': 'b' }, metadata: { loss: 0.043, note: 'best' } },
    });
    for (const creds of [rigCredentials(), rigCredentials({ r2Only: true })]) {
      const found = await latest(job, creds);
      expect(found).toBeInstanceOf(Checkpoint);
      expect({ ...found }).toEqual({
        found: true,
        name: 'slot_1',
        epoch: 7,
        key: expect.stringMatching(new RegExp(`^jobs/${job}/slot_1/e7-t1748123456700-[0-9a-f]{8}/$`)),
        timestamp: 1748123456.7,
        metadata: JSON.stringify({ loss: 0.043, note: 'best' }),
      });
    }
  });

  it('a fresh start is found=false; a bad job id fails with the core message', async () => {
    await withFakes();
    expect({ ...(await latest(uniqueJobId('dg-none'))) }).toEqual({ found: false, name: '', epoch: -1, key: '', timestamp: 0, metadata: '{}' });
    const expected = await rejection(Promise.resolve().then(() => parseR2Uri('r2://jobs/a/b/latest')));
    expect((await rejection(latest('a/b'))).message).toBe(describeError(expected));
  });
});

describe('ship', () => {
  it('ships every complete checkpoint not committed yet, records D1 rows, and ships nothing twice', async () => {
    await withFakes();
    const job = uniqueJobId('dg-ship');
    const dir = await tempDir();
    await writeCheckpoint(dir, 'slot_0', { epoch: 4, files: { 'model.bin': Buffer.alloc(100_000, 3) } });
    await writeCheckpoint(dir, 'slot_1', { epoch: 5, files: { 'model.bin': Buffer.alloc(200_000, 4), 'cfg/run.json': '{}' } });
    await mkdir(join(dir, 'slot_2')); // a folder without its sidecar: not complete, not shipped

    const report = await ship(dir, job);
    expect(report).toBeInstanceOf(ShipReport);
    expect(report.d1Pending).toEqual([]);
    expect(report.shipped.map((s) => [s.name, s.epoch, s.files, s.bytes]).sort()).toEqual([
      ['slot_0', 4, 1, 100_000],
      ['slot_1', 5, 2, 200_002],
    ]);
    for (const s of report.shipped) expect(s.key).toMatch(new RegExp(`^jobs/${job}/${s.name}/e${s.epoch}-t\\d+-[0-9a-f]{8}/$`));
    const keys = await listKeys(`jobs/${job}/`);
    expect(keys.filter((k) => k.endsWith('.manifest.json'))).toHaveLength(2);
    expect(keys.some((k) => k.includes('/slot_2/'))).toBe(false);
    const rows = await d1Query<{ name: string; epoch: number }>('SELECT name, epoch FROM checkpoints WHERE job_id = ? ORDER BY name', [job]);
    expect(rows).toEqual([
      { name: 'slot_0', epoch: 4 },
      { name: 'slot_1', epoch: 5 },
    ]);
    const shippedBytes = await getObject(`${report.shipped.find((s) => s.name === 'slot_1')!.key}cfg/run.json`);
    expect(shippedBytes.toString()).toBe('{}');

    // The flush is idempotent: what is committed is not shipped again.
    expect((await ship(dir, job)).shipped).toEqual([]);
    // And `latest` sees it.
    expect((await latest(job)).epoch).toBe(5);
  });

  it('fails the call, naming each checkpoint and why, when one did not ship (R2-only mode too)', async () => {
    await withFakes();
    const job = uniqueJobId('dg-shipfail');
    const dir = await tempDir();
    await writeCheckpoint(dir, 'good', { epoch: 1, files: { 'a.bin': 'a' } });
    await writeCheckpoint(dir, 'broken', { epoch: 2, files: { 'b.bin': 'b' }, rawSidecar: '{"name": "broken", "epoch": ' });
    const err = await rejection(ship(dir, job, rigCredentials({ r2Only: true })));
    expect(err.message).toMatch(/^1 checkpoint\(s\) not shipped: broken: .+/);
    // What could ship, shipped.
    expect((await listKeys(`jobs/${job}/good/`)).some((k) => k.endsWith('.manifest.json'))).toBe(true);
  });
});

describe('train', () => {
  const script = String.raw`
const fs = require('node:fs'), path = require('node:path');
const [dir, expectEpoch, epoch] = process.argv.slice(1);
const sidecar = path.join(dir, 'slot_0.json');
if (expectEpoch !== 'none') {
  const found = fs.existsSync(sidecar) ? JSON.parse(fs.readFileSync(sidecar, 'utf8')).epoch : 'nothing';
  if (String(found) !== expectEpoch) { console.error('resumed from ' + found + ', expected ' + expectEpoch); process.exit(3); }
}
fs.rmSync(path.join(dir, 'slot_0'), { recursive: true, force: true });
fs.mkdirSync(path.join(dir, 'slot_0'), { recursive: true });
fs.writeFileSync(path.join(dir, 'slot_0', 'weights.bin'), 'weights of epoch ' + epoch);
fs.writeFileSync(sidecar, JSON.stringify({ name: 'slot_0', epoch: Number(epoch), timestamp: Date.now() / 1000, files: ['weights.bin'] }));
`;

  it('adds only the courier (Node binary and bundled CLI, as mounts) and the configuration, then runs `r2d1 run`', async () => {
    await withFakes();
    const creds = rigCredentials();
    const out = asFakeContainer(await train(['python', 'train.py', '--epochs', '3'], 'my_run', '/checkpoints', true, creds));
    expect(out.image).toBe('ghcr.io/acme/trainer:latest');
    const calls = out.calls.map((c) => [c.method, ...c.args]);
    expect(calls.filter(([m]) => m === 'withMountedFile')).toEqual([
      ['withMountedFile', NODE_PATH, new FakeFile({ image: NODE_IMAGE, path: '/usr/local/bin/node' })],
      ['withMountedFile', CLI_PATH, new FakeFile({ module: CLI_SOURCE })],
    ]);
    expect(existsSync(join(MODULE_DIR, CLI_SOURCE))).toBe(true);
    const env = Object.fromEntries(calls.filter(([m]) => m === 'withEnvVariable').map(([, k, v]) => [k, v]));
    expect(env).toEqual({
      R2D1_R2_BUCKET: creds.bucket,
      R2D1_R2_ENDPOINT_URL: creds.endpoint,
      R2D1_D1_API_URL: creds.d1ApiUrl,
      R2D1_DAGGER_RUN: expect.stringMatching(/^[0-9a-f]{16}$/),
    });
    const secrets = Object.fromEntries(calls.filter(([m]) => m === 'withSecretVariable').map(([, k, v]) => [k, v]));
    expect(secrets).toEqual({
      R2D1_ACCOUNT_ID: creds.accountId,
      R2D1_R2_ACCESS_KEY: creds.accessKey,
      R2D1_R2_SECRET_KEY: creds.secretKey,
      R2D1_API_TOKEN: creds.apiToken,
      R2D1_D1_DATABASE_ID: creds.d1DatabaseId,
    });
    // Secrets go to the container as secret variables; the module never reads them.
    for (const secret of Object.values(secrets)) expect(asFake(secret as never).reads).toBe(0);
    expect(calls.at(-1)).toEqual([
      'withExec',
      [NODE_PATH, CLI_PATH, 'run', '--pull', 'r2://jobs/my_run/latest', '--dest', '/checkpoints', '--watch', '/checkpoints', '--job-id', 'my_run', '--', 'python', 'train.py', '--epochs', '3'],
    ]);
    expect(calls.filter(([m]) => m === 'withExec')).toHaveLength(1);
    expect(calls.some(([m]) => m === 'withFile')).toBe(false);

    // Without resume: no pull; R2-only: no D1 variables.
    const fresh = asFakeContainer(await train(['python', 'train.py'], 'my_run', '/ckpt', false, rigCredentials({ r2Only: true })));
    expect(fresh.calls.at(-1)!.args[0]).toEqual([NODE_PATH, CLI_PATH, 'run', '--watch', '/ckpt', '--job-id', 'my_run', '--', 'python', 'train.py']);
    expect(fresh.calls.map((c) => c.args[0])).not.toContain('R2D1_API_TOKEN');
    expect(fresh.calls.map((c) => c.args[0])).not.toContain('R2D1_D1_DATABASE_ID');
  });

  it('fails the call on a bad job id (the core message) or a missing command', async () => {
    await withFakes();
    const expected = await rejection(Promise.resolve().then(() => parseR2Uri('r2://jobs/../latest')));
    expect((await rejection(train(['python'], '..', '/ckpt', false))).message).toBe(describeError(expected));
    expect((await rejection(train([], 'my_run', '/ckpt', false))).message).toMatch(/missing the training command/);
  });

  /**
   * What the container would run, run here: the recorded withExec argv with the two mounts mapped to
   * their local equivalents (this Node for the node image's binary, the module's vendored CLI for
   * the CLI mount), under the recorded variables and the secrets' values.
   */
  async function runLikeTheContainer(container: DaggerContainer): Promise<{ code: number | null; output: string }> {
    const { calls } = asFakeContainer(container);
    const local = new Map<string, string>();
    const env: Record<string, string> = {};
    for (const { method, args } of calls) {
      if (method === 'withMountedFile') {
        const { origin } = args[1] as FakeFile;
        if ('image' in origin) {
          expect(origin).toEqual({ image: NODE_IMAGE, path: '/usr/local/bin/node' });
          local.set(args[0] as string, process.execPath);
        } else local.set(args[0] as string, join(MODULE_DIR, origin.module));
      }
      if (method === 'withEnvVariable') env[args[0] as string] = args[1] as string;
      if (method === 'withSecretVariable') env[args[0] as string] = await asFake(args[1] as never).plaintext();
    }
    const exec = calls.find((c) => c.method === 'withExec')!.args[0] as string[];
    const [command, ...rest] = exec.map((arg) => local.get(arg) ?? arg);
    const cwd = await tempDir('r2d1-dagger-cwd-');
    return new Promise((resolve, reject) => {
      const child = spawn(command!, rest, { cwd, env: cliEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
      let output = '';
      child.stdout.on('data', (d) => (output += d));
      child.stderr.on('data', (d) => (output += d));
      const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
      child.on('error', reject);
      child.on('close', (code) => {
        clearTimeout(timer);
        resolve({ code, output });
      });
    });
  }

  it('its command line works: the vendored CLI pulls the latest, runs training, ships what it wrote', async () => {
    await withFakes();
    const job = uniqueJobId('dg-train');
    await shipTrained(job, { slot_0: { epoch: 3, files: { 'weights.bin': 'weights of epoch 3' } } });
    const ckpt = join(await tempDir('r2d1-dagger-ckpt-'), 'checkpoints');

    const resumed = await runLikeTheContainer(await train(['node', '-e', script, ckpt, '3', '4'], job, ckpt, true));
    expect(resumed).toMatchObject({ code: 0 });
    const after = await latest(job);
    expect(after).toMatchObject({ found: true, name: 'slot_0', epoch: 4 });
    expect((await getObject(`${after.key}weights.bin`)).toString()).toBe('weights of epoch 4');

    // A fresh job without resume: nothing pulled, the new checkpoint shipped.
    const freshJob = uniqueJobId('dg-train-fresh');
    const freshDir = join(await tempDir('r2d1-dagger-ckpt-'), 'ck');
    expect(await runLikeTheContainer(await train(['node', '-e', script, freshDir, 'none', '1'], freshJob, freshDir, false, rigCredentials({ r2Only: true })))).toMatchObject({ code: 0 });
    expect(await latest(freshJob)).toMatchObject({ found: true, epoch: 1 });

    // The training command's failure is the container's failure (so the Dagger call fails).
    const failing = await runLikeTheContainer(await train(['node', '-e', script, join(freshDir, 'other'), '99', '2'], freshJob, join(freshDir, 'other'), true));
    expect(failing.code).toBe(3);
    expect(failing.output).toContain('resumed from 1, expected 99');
  }, 120_000);
});

describe('the module as Dagger sees it', () => {
  let scanned: ModuleJson;
  let readme: string;
  const functions = () => scanned.objects.R2D1!.methods;

  beforeEach(async () => {
    const config = JSON.parse(await readFile(join(MODULE_DIR, 'dagger.json'), 'utf8')) as { name: string };
    scanned ??= await scanModule(config.name);
    readme ??= await readFile(join(REPO_ROOT, 'README.md'), 'utf8');
  }, 60_000);

  it('dagger.json, package.json and tsconfig.json are what the engine expects', async () => {
    const config = JSON.parse(await readFile(join(MODULE_DIR, 'dagger.json'), 'utf8'));
    const pkg = JSON.parse(await readFile(join(MODULE_DIR, 'package.json'), 'utf8'));
    const rootPkg = JSON.parse(await readFile(join(REPO_ROOT, 'package.json'), 'utf8'));
    const sdkVersion = rootPkg.devDependencies['@dagger.io/dagger'];
    expect(config).toEqual({ name: 'r2d1', engineVersion: `v${sdkVersion}`, sdk: { source: 'typescript' } });
    expect(pkg.type).toBe('module');
    // A version in `dependencies` would switch the engine's TypeScript runtime to "remote SDK" mode;
    // the module uses the default bundle mode (the engine generates ./sdk), so only a devDependency,
    // pinned to the SDK the tests ran against.
    expect(pkg.dependencies['@dagger.io/dagger']).toBeUndefined();
    expect(pkg.devDependencies['@dagger.io/dagger']).toBe(sdkVersion);
    expect(pkg.dependencies.typescript).toMatch(/^5\.9\./);
    const tsconfig = JSON.parse(await readFile(join(MODULE_DIR, 'tsconfig.json'), 'utf8'));
    expect(tsconfig.compilerOptions).toMatchObject({ experimentalDecorators: true, paths: { '@dagger.io/dagger': ['./sdk/index.ts'] } });
  });

  it('exposes pull, latest, ship and train with these arguments and return types, never cached', () => {
    expect(scanned.name).toBe('R2D1');
    expect(Object.keys(functions()).sort()).toEqual(['latest', 'pull', 'ship', 'train']);
    const shape = (fn: FunctionJson) =>
      Object.values(fn.arguments).map((a) => `${a.name}: ${typeName(a.type)}${a.isOptional ? '?' : ''}${a.defaultValue !== undefined ? ` = ${JSON.stringify(a.defaultValue)}` : ''}`);
    const credentials = ['bucket: String', 'accountId: Secret', 'accessKey: Secret', 'secretKey: Secret'];
    const optionals = ['endpoint: String?', 'sessionToken: Secret?', 'apiToken: Secret?', 'd1DatabaseId: Secret?', 'd1ApiUrl: String?'];
    const { pull: p, latest: l, ship: s, train: t } = functions();
    expect(shape(p!)).toEqual(['source: String', ...credentials, ...optionals]);
    expect(shape(l!)).toEqual(['jobId: String', ...credentials, ...optionals]);
    expect(shape(s!)).toEqual(['checkpoints: Directory', 'jobId: String', ...credentials, ...optionals]);
    expect(shape(t!)).toEqual(['container: Container', 'args: [String]', 'jobId: String', 'checkpointPath: String', ...credentials, 'resume: Boolean = false', ...optionals]);
    expect([p, l, s, t].map((fn) => typeName(fn!.returnType))).toEqual(['Directory', 'Checkpoint', 'ShipReport', 'Container']);
    expect([p, l, s, t].map((fn) => fn!.cache)).toEqual(['never', 'never', 'never', 'never']);
    for (const fn of [p, l, s, t]) for (const arg of Object.values(fn!.arguments)) expect(arg.description).not.toBe('');

    const fields = (name: string) => Object.values(scanned.objects[name]!.properties).map((f) => `${f.name}: ${typeName(f.type)}`);
    expect(fields('Checkpoint')).toEqual(['found: Boolean', 'name: String', 'epoch: Int', 'key: String', 'timestamp: Float', 'metadata: String']);
    expect(fields('ShipReport')).toEqual(['shipped: [ShippedCheckpoint]', 'd1Pending: [String]']);
    expect(fields('ShippedCheckpoint')).toEqual(['name: String', 'epoch: Int', 'bytes: Int', 'files: Int', 'key: String', 'seconds: Float']);
    for (const object of Object.values(scanned.objects)) for (const field of Object.values(object.properties)) expect(field.isExposed).toBe(true);
  });

  it('each function has a doc comment: a short first line, and a `dagger call` example that fits its signature', () => {
    for (const fn of Object.values(functions())) {
      const [first, second] = fn.description.split('\n');
      expect(first!.length).toBeGreaterThan(10);
      expect(first!.length).toBeLessThanOrEqual(100);
      expect(second).toBe('');
      const examples = daggerCalls(fn.description).filter((c) => c.fn === kebab(fn.name));
      expect(examples.length).toBeGreaterThan(0);
      for (const example of examples) checkCall(example);
    }
  });

  it("the README's Dagger section has a `dagger call` example of each function, and each fits the signatures", () => {
    const section = /\n## Dagger module\n([\s\S]*?)(?=\n## |$)/.exec(readme)?.[1];
    expect(section).toBeDefined();
    const calls = daggerCalls(section!);
    for (const name of Object.keys(functions())) expect(calls.filter((c) => c.fn === kebab(name)).length).toBeGreaterThan(0);
    for (const call of calls) checkCall(call);
    expect(section).toMatch(/env:[A-Z_]+/);
    expect(section).toMatch(/not (been )?run against a real Dagger engine/i);
  });

  /** Every flag is an argument (kebab-case), every required argument is given, secrets come from env:, and the chain starts with a field or function of the result. */
  function checkCall(call: DaggerCall): void {
    const fn = Object.values(functions()).find((f) => kebab(f.name) === call.fn);
    if (!fn) throw new Error(`${call.text}: no function ${call.fn}`);
    const byFlag = new Map(Object.values(fn.arguments).map((a) => [kebab(a.name), a]));
    for (const [flag, value] of call.flags) {
      const arg = byFlag.get(flag);
      if (!arg) throw new Error(`${call.text}: ${fn.name} has no argument --${flag}`);
      if (typeName(arg.type) === 'Secret' && !(typeof value === 'string' && value.startsWith('env:'))) throw new Error(`${call.text}: --${flag} is a Secret: pass it as env:VAR`);
      if (value === true && typeName(arg.type) !== 'Boolean') throw new Error(`${call.text}: --${flag} needs a value`);
    }
    for (const arg of Object.values(fn.arguments)) {
      if (!arg.isOptional && arg.defaultValue === undefined && !call.flags.has(kebab(arg.name))) throw new Error(`${call.text}: missing --${kebab(arg.name)}`);
    }
    const [next, ...more] = call.chain;
    if (next === undefined) return;
    const returned = typeName(fn.returnType);
    const object = scanned.objects[returned];
    if (object) {
      const field = Object.values(object.properties).find((p) => kebab(p.name) === next);
      if (!field) throw new Error(`${call.text}: ${returned} has no field ${next}`);
      const inner = field.type?.kind === 'LIST_KIND' ? scanned.objects[typeName(field.type.typeDef)] : undefined;
      if (inner && more[0] && !Object.values(inner.properties).some((p) => kebab(p.name) === more[0])) throw new Error(`${call.text}: ${inner.name} has no field ${more[0]}`);
    } else {
      const core = { Directory: new DaggerDirectory(), Container: new DaggerContainer() }[returned] as unknown as Record<string, unknown> | undefined;
      const camel = next.replace(/-([a-z0-9])/g, (_, c: string) => c.toUpperCase());
      if (!core || typeof core[camel] !== 'function') throw new Error(`${call.text}: ${returned} has no function ${next}`);
    }
  }
});

function typeName(type: { kind: string; name?: string; typeDef?: unknown } | undefined): string {
  if (!type) return '?';
  switch (type.kind) {
    case 'STRING_KIND':
      return 'String';
    case 'INTEGER_KIND':
      return 'Int';
    case 'FLOAT_KIND':
      return 'Float';
    case 'BOOLEAN_KIND':
      return 'Boolean';
    case 'LIST_KIND':
      return `[${typeName(type.typeDef as never)}]`;
    default:
      return type.name ?? type.kind;
  }
}

describe('the module builds from the sources', () => {
  it('type-checks against @dagger.io/dagger (tsc -p dagger/tsconfig.json)', async () => {
    await run(join(REPO_ROOT, 'node_modules', '.bin', 'tsc'), ['-p', join(MODULE_DIR, 'tsconfig.json'), '--noEmit'], { cwd: REPO_ROOT }).catch((err: { stdout?: string }) => {
      throw new Error(`tsc -p dagger/tsconfig.json failed:\n${err.stdout ?? err}`);
    });
  }, 120_000);

  it('dagger/vendor/ is what `npm run bundle:dagger` builds from src/ and dist/cli/', async () => {
    const out = await tempDir('r2d1-dagger-vendor-');
    await run(process.execPath, [join(MODULE_DIR, 'scripts', 'vendor.mjs'), '--out', out], { cwd: REPO_ROOT });
    const [built, committed] = await Promise.all([fileTree(out), fileTree(join(MODULE_DIR, 'vendor'))]);
    expect(Object.keys(committed)).toEqual(Object.keys(built));
    const stale = Object.keys(built).filter((path) => !built[path]!.equals(committed[path]!));
    if (stale.length > 0) throw new Error(`dagger/vendor/ is stale (${stale.join(', ')}): run \`npm run bundle\` (or \`npm run bundle:dagger\`) and commit dagger/vendor/`);
    expect(committed['cli/r2d1.mjs']!.equals(await readFile(join(REPO_ROOT, 'dist', 'cli', 'index.js')))).toBe(true);
  }, 180_000);

  it('the vendored core bundle runs on its own: the functions the module imports, against the rig', async () => {
    const core = (await import(pathToFileURL(join(MODULE_DIR, 'vendor', 'core', 'index.js')).href)) as typeof import('../src/index.js');
    for (const name of ['Courier', 'Fetcher', 'describeError', 'loadConfig', 'openBackends', 'parseR2Uri', 'consoleLogger'] as const) expect(typeof core[name]).toBe('function');
    const job = uniqueJobId('dg-vendored');
    await shipTrained(job, { slot_0: { epoch: 9, files: { 'w.bin': 'nine' } } });
    const fetcher = new core.Fetcher(core.openBackends(core.loadConfig(rigEnv()), silentLogger), { logger: silentLogger });
    try {
      const dest = await tempDir();
      expect(await fetcher.pull(`r2://jobs/${job}/latest`, { dest })).toMatchObject({ found: true, name: 'slot_0', epoch: 9 });
      expect(await readFile(join(dest, 'slot_0', 'w.bin'), 'utf8')).toBe('nine');
    } finally {
      fetcher.close();
    }
  }, 60_000);
});

/** relative path ("/"-separated) → content, for every file under `root`. */
async function fileTree(root: string): Promise<Record<string, Buffer>> {
  const out: Record<string, Buffer> = {};
  const walk = async (dir: string): Promise<void> => {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) await walk(path);
      else out[relative(root, path).split(sep).join('/')] = await readFile(path);
    }
  };
  await walk(root);
  return Object.fromEntries(Object.entries(out).sort(([a], [b]) => (a < b ? -1 : 1)));
}
