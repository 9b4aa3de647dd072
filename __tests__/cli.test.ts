/**
 * End-to-end tests of the built CLI (`node lib/cli/index.js`, built by `npm run build`/pretest) against
 * the miniflare rig: R2 behind its S3 endpoint, and the D1 REST stand-in. Each CLI run gets only
 * PATH, HOME and the variables the test passes, and a fresh temp directory as cwd.
 */
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { GetObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { d1Query, makeTempDir, rig, rigEnv, uniqueJobId } from './rig/rig.js';
import {
  CLI_PATH,
  cliEnv,
  closedPort,
  hashTree,
  killAllStarted,
  listKeys,
  parseJson,
  removeAll,
  rigS3,
  runCli,
  show,
  startCli,
  waitFor,
  writeCheckpoint,
  type CliResult,
  type Env,
} from './helpers/cli.js';

const temps: string[] = [];
let s3: S3Client;

beforeAll(() => {
  if (!existsSync(CLI_PATH)) throw new Error(`${CLI_PATH} is missing: run \`npm run build\` first (npm test does)`);
  s3 = rigS3();
});

afterAll(async () => {
  killAllStarted();
  s3?.destroy();
  await removeAll(temps);
});

async function tempDir(): Promise<string> {
  const dir = await makeTempDir('r2d1-cli-');
  temps.push(dir);
  return dir;
}

/** The rig's variables only (R2 + D1), on top of PATH and HOME. */
const fullEnv = (overrides: Record<string, string | undefined> = {}): Env => cliEnv(rigEnv(overrides));
/** R2-only mode: no D1 variables. */
const r2OnlyEnv = (): Env => fullEnv({ R2D1_API_TOKEN: undefined, R2D1_D1_DATABASE_ID: undefined });

const R2_ONLY_WARNING = 'R2-only mode';
const STACK_LINE = '    at ';

function expectExit(result: CliResult, code: number): void {
  if (result.code !== code || result.timedOut) throw new Error(`expected exit ${code}, got ${show(result)}`);
}

function count(haystack: string, needle: string): number {
  return haystack.split(needle).length - 1;
}

/** Lines of stderr that are the CLI's final error line (`r2d1: ...`), not timestamped logs. */
function errorLines(stderr: string): string[] {
  return stderr.split('\n').filter((l) => l.startsWith('r2d1: '));
}

/** An error is one line on stderr, and no stack trace anywhere. */
function expectOneLineError(result: CliResult): string {
  const lines = errorLines(result.stderr);
  if (lines.length !== 1) throw new Error(`expected exactly one "r2d1: ..." error line, got ${show(result)}`);
  expect(result.stderr).not.toContain(STACK_LINE);
  expect(result.stdout).not.toContain(STACK_LINE);
  return lines[0]!;
}

const names = (list: { name: string }[]) => list.map((s) => s.name).sort();

describe('pull on a fresh job', () => {
  it('exits 0 and says it is a fresh start; --json gives {found: false}', async () => {
    const cwd = await tempDir();
    const job = uniqueJobId('fresh');
    const uri = `r2://jobs/${job}/latest`;
    const human = await runCli(['pull', uri, '--dest', 'ckpt'], { env: fullEnv(), cwd });
    expectExit(human, 0);
    expect(human.stdout).toMatch(/fresh start/i);
    expect(human.stdout).toContain(uri);

    const json = await runCli(['pull', uri, '--dest', 'ckpt', '--json'], { env: fullEnv(), cwd });
    expectExit(json, 0);
    expect(parseJson(json)).toMatchObject({ found: false, source: uri, files: 0, downloaded: 0 });
  });
});

describe('ship, pull, ls, status', () => {
  const job = uniqueJobId('ship');
  let cwd: string;
  let a: Awaited<ReturnType<typeof writeCheckpoint>>;
  let b: Awaited<ReturnType<typeof writeCheckpoint>>;

  beforeAll(async () => {
    cwd = await tempDir();
    const src = join(cwd, 'out');
    a = await writeCheckpoint(src, 'ck_a', 3, { 'model.bin': 3 * 1024 * 1024 + 17, 'config.json': 211 });
    // 9 MiB: above the 8 MiB part size, so a multipart upload and a ranged download.
    b = await writeCheckpoint(src, 'ck_b', 7, { 'weights/part-0.bin': 9 * 1024 * 1024 + 5, 'tokenizer.txt': 5000, 'empty.bin': 0 });
  });

  it('ship --json ships both checkpoints and exits 0', async () => {
    const result = await runCli(['ship', 'out', '--job-id', job, '--json'], { env: fullEnv(), cwd });
    expectExit(result, 0);
    const report = parseJson(result);
    expect(report.ok).toBe(true);
    expect(report.failed).toEqual([]);
    expect(names(report.shipped)).toEqual(['ck_a', 'ck_b']);
    const byName = Object.fromEntries(report.shipped.map((s: { name: string }) => [s.name, s]));
    expect(byName.ck_a).toMatchObject({ epoch: 3, files: 2, bytes: 3 * 1024 * 1024 + 17 + 211 });
    expect(byName.ck_b).toMatchObject({ epoch: 7, files: 3 });
    // The D1 rows were written before ship returned.
    const rows = await d1Query<{ name: string; epoch: number }>('SELECT name, epoch FROM checkpoints WHERE job_id = ? ORDER BY name', [job]);
    expect(rows).toEqual([
      { name: 'ck_a', epoch: 3 },
      { name: 'ck_b', epoch: 7 },
    ]);
  });

  it('pull latest lands the highest epoch, byte-identical, with its sidecar; a second pull downloads nothing', async () => {
    const result = await runCli(['pull', `r2://jobs/${job}/latest`, '--dest', 'restored', '--json'], { env: fullEnv(), cwd });
    expectExit(result, 0);
    const info = parseJson(result);
    expect(info).toMatchObject({ found: true, name: 'ck_b', epoch: 7, files: 3, cached: false });
    expect(await hashTree(join(cwd, 'restored', 'ck_b'))).toEqual(b.hashes);
    expect(await readFile(join(cwd, 'restored', 'ck_b.json'), 'utf8')).toBe(b.sidecar);

    const again = await runCli(['pull', `r2://jobs/${job}/latest`, '--dest', 'restored', '--json'], { env: fullEnv(), cwd });
    expectExit(again, 0);
    expect(parseJson(again)).toMatchObject({ found: true, epoch: 7, cached: true, downloaded: 0 });
  });

  it('pull r2://jobs/<id>/<name> lands that checkpoint, byte-identical', async () => {
    const result = await runCli(['pull', `r2://jobs/${job}/ck_a`, '--dest', 'one', '--json'], { env: fullEnv(), cwd });
    expectExit(result, 0);
    expect(parseJson(result)).toMatchObject({ found: true, name: 'ck_a', epoch: 3 });
    expect(await hashTree(join(cwd, 'one', 'ck_a'))).toEqual(a.hashes);
  });

  it('ls lists both names and epochs (human and --json)', async () => {
    const human = await runCli(['ls', '--job-id', job], { env: fullEnv(), cwd });
    expectExit(human, 0);
    expect(human.stdout).toMatch(/ck_a\s+epoch\s+3\b/);
    expect(human.stdout).toMatch(/ck_b\s+epoch\s+7\b/);

    const json = await runCli(['ls', '--job-id', job, '--json'], { env: fullEnv(), cwd });
    expectExit(json, 0);
    const listed = parseJson(json);
    expect(listed.jobId).toBe(job);
    expect(listed.checkpoints.map((c: { name: string; epoch: number }) => [c.name, c.epoch])).toEqual([
      ['ck_b', 7],
      ['ck_a', 3],
    ]);
  });

  it('status gives the latest epoch and a heartbeat age, from D1', async () => {
    const human = await runCli(['status', '--job-id', job], { env: fullEnv(), cwd });
    expectExit(human, 0);
    expect(human.stdout).toMatch(/latest epoch 7\b/);
    expect(human.stdout).toMatch(/heartbeat \d+[smhd] ago/);
    expect(human.stdout).toContain('D1');

    const json = await runCli(['status', '--job-id', job, '--json'], { env: fullEnv(), cwd });
    expectExit(json, 0);
    const status = parseJson(json);
    expect(status).toMatchObject({ jobId: job, source: 'D1', found: true, name: 'ck_b', epoch: 7 });
    expect(status.heartbeatAgeSeconds).toBeGreaterThanOrEqual(0);
    expect(status.heartbeatAgeSeconds).toBeLessThan(600);
  });

  it('in R2-only mode status reads the bucket, still finds the latest, and warns exactly once', async () => {
    const human = await runCli(['status', '--job-id', job], { env: r2OnlyEnv(), cwd });
    expectExit(human, 0);
    expect(human.stdout).toMatch(/latest epoch 7\b/);
    expect(human.stdout).toMatch(/from R2\b/);
    expect(count(human.stderr, R2_ONLY_WARNING)).toBe(1);

    const json = await runCli(['status', '--job-id', job, '--json'], { env: r2OnlyEnv(), cwd });
    expectExit(json, 0);
    expect(parseJson(json)).toMatchObject({ source: 'R2', found: true, name: 'ck_b', epoch: 7 });
    expect(parseJson(json).heartbeatAgeSeconds).toBeLessThan(600);
    expect(count(json.stderr, R2_ONLY_WARNING)).toBe(1);

    const pulled = await runCli(['pull', `r2://jobs/${job}/latest`, '--dest', 'r2only', '--json'], { env: r2OnlyEnv(), cwd });
    expectExit(pulled, 0);
    expect(parseJson(pulled)).toMatchObject({ found: true, name: 'ck_b', epoch: 7 });
    expect(count(pulled.stderr, R2_ONLY_WARNING)).toBe(1);
  });

  it('shipping the same directory again re-uploads nothing', async () => {
    const before = await listKeys(`jobs/${job}/`, s3);
    const result = await runCli(['ship', 'out', '--job-id', job, '--json'], { env: fullEnv(), cwd });
    expectExit(result, 0);
    expect(parseJson(result)).toMatchObject({ ok: true, shipped: [], failed: [] });
    expect((await listKeys(`jobs/${job}/`, s3)).sort()).toEqual(before.sort());
  });
});

describe('secrets', () => {
  it('shows bucket and endpoint, masks the secret key and API token, names the variables', async () => {
    const r = rig();
    const cwd = await tempDir();
    const human = await runCli(['secrets'], { env: fullEnv(), cwd });
    expectExit(human, 0);
    const all = human.stdout + human.stderr;
    expect(human.stdout).toContain(r.bucket);
    expect(human.stdout).toContain(r.s3Endpoint);
    for (const variable of ['R2D1_R2_BUCKET', 'R2D1_R2_ENDPOINT_URL', 'R2D1_R2_SECRET_KEY', 'R2D1_API_TOKEN', 'R2D1_D1_DATABASE_ID']) {
      expect(human.stdout).toContain(variable);
    }
    expect(all).not.toContain(r.secretAccessKey);
    expect(all).not.toContain(r.apiToken);

    const json = await runCli(['secrets', '--json'], { env: fullEnv(), cwd });
    expectExit(json, 0);
    expect(json.stdout + json.stderr).not.toContain(r.secretAccessKey);
    expect(json.stdout + json.stderr).not.toContain(r.apiToken);
    const out = parseJson(json);
    expect(out.mode).toMatch(/D1/);
    const setting = (name: string) => out.settings.find((s: { setting: string }) => s.setting === name);
    expect(setting('bucket')).toEqual({ setting: 'bucket', variable: 'R2D1_R2_BUCKET', value: r.bucket });
    expect(setting('endpoint')).toMatchObject({ variable: 'R2D1_R2_ENDPOINT_URL', value: r.s3Endpoint });
    expect(setting('secretAccessKey').variable).toBe('R2D1_R2_SECRET_KEY');
    expect(setting('apiToken').variable).toBe('R2D1_API_TOKEN');
    // Masked, but enough to tell two keys apart.
    expect(setting('secretAccessKey').value).not.toBe(r.secretAccessKey);
    expect(setting('secretAccessKey').value.length).toBeLessThan(16);
    expect(setting('apiToken').value).not.toBe(r.apiToken);
  });

  it('reads the aliases other tools use (AWS_*, R2_BUCKET, CLOUDFLARE_*, D1_DATABASE_ID)', async () => {
    const r = rig();
    const cwd = await tempDir();
    const aliases = {
      AWS_ACCESS_KEY_ID: r.accessKeyId,
      AWS_SECRET_ACCESS_KEY: r.secretAccessKey,
      R2_BUCKET: r.bucket,
      CLOUDFLARE_API_TOKEN: r.apiToken,
      D1_DATABASE_ID: r.databaseId,
      CLOUDFLARE_ACCOUNT_ID: r.accountId,
    };
    const json = await runCli(['secrets', '--json'], { env: cliEnv(aliases), cwd });
    expectExit(json, 0);
    expect(json.stdout + json.stderr).not.toContain(r.secretAccessKey);
    expect(json.stdout + json.stderr).not.toContain(r.apiToken);
    const out = parseJson(json);
    const setting = (name: string) => out.settings.find((s: { setting: string }) => s.setting === name);
    expect(setting('bucket')).toMatchObject({ variable: 'R2_BUCKET', value: r.bucket });
    expect(setting('accessKeyId').variable).toBe('AWS_ACCESS_KEY_ID');
    expect(setting('secretAccessKey').variable).toBe('AWS_SECRET_ACCESS_KEY');
    expect(setting('apiToken').variable).toBe('CLOUDFLARE_API_TOKEN');
    expect(setting('databaseId')).toMatchObject({ variable: 'D1_DATABASE_ID', value: r.databaseId });
    expect(setting('accountId')).toMatchObject({ variable: 'CLOUDFLARE_ACCOUNT_ID', value: r.accountId });
    // No endpoint variable: derived from the account id.
    expect(setting('endpoint').value).toBe(`https://${r.accountId}.r2.cloudflarestorage.com`);

    // And they work against the rig (the endpoint and D1 URL have no alias).
    const status = await runCli(['status', '--job-id', uniqueJobId('alias'), '--json'], {
      env: cliEnv({ ...aliases, R2D1_R2_ENDPOINT_URL: r.s3Endpoint, R2D1_D1_API_URL: r.d1ApiUrl }),
      cwd,
    });
    expectExit(status, 0);
    expect(parseJson(status)).toMatchObject({ source: 'D1', found: false });
  });

  it('reads a .env file in the working directory; the real environment wins over it', async () => {
    const r = rig();
    const cwd = await tempDir();
    const dotenv = Object.entries(rigEnv())
      .map(([k, v]) => `${k}=${v}`)
      .join('\n');
    await writeFile(join(cwd, '.env'), `# written by the test\n${dotenv}\n`);

    const fromFile = await runCli(['secrets', '--json'], { env: cliEnv(), cwd });
    expectExit(fromFile, 0);
    expect(fromFile.stdout + fromFile.stderr).not.toContain(r.secretAccessKey);
    const settings = parseJson(fromFile).settings as { setting: string; value: string; variable: string }[];
    expect(settings.find((s) => s.setting === 'bucket')).toMatchObject({ value: r.bucket, variable: 'R2D1_R2_BUCKET' });

    const overridden = await runCli(['secrets', '--json'], { env: cliEnv({ R2D1_R2_BUCKET: 'bucket-from-env' }), cwd });
    expectExit(overridden, 0);
    const over = parseJson(overridden).settings as { setting: string; value: string }[];
    expect(over.find((s) => s.setting === 'bucket')!.value).toBe('bucket-from-env');
    expect(over.find((s) => s.setting === 'endpoint')!.value).toBe(r.s3Endpoint);

    // A real command configured by the .env alone.
    const status = await runCli(['status', '--job-id', uniqueJobId('dotenv'), '--json'], { env: cliEnv(), cwd });
    expectExit(status, 0);
    expect(parseJson(status)).toMatchObject({ source: 'D1', found: false });
  });
});

describe('configuration and usage errors', () => {
  it('with no variables at all: exit 2, one line naming every missing variable and the fix, no stack', async () => {
    const cwd = await tempDir();
    const commands = [['pull', 'r2://jobs/x/latest', '--dest', 'd'], ['ls', '--job-id', 'x'], ['secrets']];
    const results = await Promise.all(commands.map((args) => runCli(args, { env: cliEnv(), cwd })));
    for (const result of results) {
      expectExit(result, 2);
      const line = expectOneLineError(result);
      expect(result.stderr.trim().split('\n')).toHaveLength(1);
      for (const variable of ['R2D1_R2_BUCKET', 'R2D1_R2_ACCESS_KEY', 'R2D1_R2_SECRET_KEY', 'R2D1_ACCOUNT_ID']) {
        expect(line).toContain(variable);
      }
      expect(line).toMatch(/export|\.env/);
      expect(result.stdout).toBe('');
    }
    const json = await runCli(['ls', '--job-id', 'x', '--json'], { env: cliEnv(), cwd });
    expectExit(json, 2);
    expect(parseJson(json)).toMatchObject({ ok: false, error: expect.stringContaining('R2D1_R2_BUCKET') });
  });

  it('a malformed R2D1_R2_ENDPOINT_URL is named in the error', async () => {
    const cwd = await tempDir();
    const bads = ['not a url', 'localhost:9000', 'ftp://example.com'];
    const results = await Promise.all(bads.map((bad) => runCli(['ls', '--job-id', 'x'], { env: fullEnv({ R2D1_R2_ENDPOINT_URL: bad }), cwd })));
    for (const result of results) {
      expectExit(result, 2);
      expect(expectOneLineError(result)).toContain('R2D1_R2_ENDPOINT_URL');
    }
  });

  it('an unreachable endpoint fails pull within a bounded time, in one line naming the endpoint', async () => {
    const cwd = await tempDir();
    const port = await closedPort();
    const endpoint = `http://127.0.0.1:${port}`;
    const result = await runCli(['pull', `r2://jobs/${uniqueJobId('down')}/latest`, '--dest', 'd'], {
      env: fullEnv({ R2D1_R2_ENDPOINT_URL: endpoint }),
      cwd,
      timeoutMs: 40_000,
    });
    if (result.timedOut) throw new Error(`pull did not give up within 40 s: ${show(result)}`);
    expect(result.code).not.toBe(0);
    expect(result.code).not.toBeNull();
    expect(result.ms).toBeLessThan(30_000);
    expect(expectOneLineError(result)).toContain(`127.0.0.1:${port}`);
    expect(result.stdout).not.toMatch(/fresh start/i); // an unreachable bucket is never a fresh start
  });

  it('a URI that is not r2:// exits 2 naming the expected forms', async () => {
    const cwd = await tempDir();
    const result = await runCli(['pull', 's3://x', '--dest', 'd'], { env: fullEnv(), cwd });
    expectExit(result, 2);
    const line = expectOneLineError(result);
    expect(line).toContain('s3://x');
    expect(line).toContain('r2://jobs/<job-id>/latest');
  });

  it('an unknown command, an unknown option and a missing argument exit 2', async () => {
    const cwd = await tempDir();
    const unknown = await runCli(['frobnicate'], { env: fullEnv(), cwd });
    expectExit(unknown, 2);
    expect(expectOneLineError(unknown)).toContain('frobnicate');

    const option = await runCli(['ls', '--job-id', 'x', '--bogus'], { env: fullEnv(), cwd });
    expectExit(option, 2);
    expect(option.stderr).toContain('--bogus');
    expect(option.stderr).not.toContain(STACK_LINE);

    const noDest = await runCli(['pull', `r2://jobs/${uniqueJobId()}/latest`], { env: fullEnv(), cwd });
    expectExit(noDest, 2);
    expect(expectOneLineError(noDest)).toContain('--dest');

    const noJob = await runCli(['ls'], { env: fullEnv(), cwd });
    expectExit(noJob, 2);
    expect(expectOneLineError(noJob)).toContain('--job-id');
  });
});

describe('hostile input', () => {
  it('a sidecar whose name disagrees with its file is not shipped, and the report says why', async () => {
    const cwd = await tempDir();
    const job = uniqueJobId('liar');
    await writeCheckpoint(join(cwd, 'out'), 'ck_x', 1, { 'w.bin': 1000 }, { sidecarName: 'ck_other' });
    const result = await runCli(['ship', 'out', '--job-id', job, '--json'], { env: fullEnv(), cwd });
    expect(result.code).not.toBe(0);
    expect(result.timedOut).toBe(false);
    const report = parseJson(result);
    expect(report.ok).toBe(false);
    expect(report.shipped).toEqual([]);
    expect(report.failed).toHaveLength(1);
    expect(report.failed[0].name).toBe('ck_x');
    expect(report.failed[0].reason).toContain('ck_x.json');
    expect(report.failed[0].reason).toContain('ck_other');
    expect(await listKeys(`jobs/${job}/`, s3)).toEqual([]);
  });

  it('URIs that climb out or are absolute are refused with a clear error', async () => {
    const cwd = await tempDir();
    const uris = ['r2://jobs/../x', 'r2://jobs/a/../../etc', 'r2://../x', 'r2:///etc/passwd'];
    const pulls = await Promise.all(uris.map((uri) => runCli(['pull', uri, '--dest', 'd'], { env: fullEnv(), cwd })));
    for (const [i, result] of pulls.entries()) {
      const uri = uris[i]!;
      expectExit(result, 2);
      const line = expectOneLineError(result);
      expect(line).toContain(JSON.stringify(uri));
      expect(line).toMatch(/\.\.|absolute/);
    }
    expect(existsSync(join(cwd, 'd'))).toBe(false);
  });

  it('job ids that are not one key segment are refused by every command, with D1 or without', async () => {
    const cwd = await tempDir();
    const cases: [string[], Env][] = [];
    for (const job of ['..', 'a/b']) {
      for (const env of [fullEnv(), r2OnlyEnv()]) {
        cases.push([['ls', '--job-id', job], env], [['status', '--job-id', job], env], [['ship', 'out', '--job-id', job], env]);
      }
    }
    const results = await Promise.all(cases.map(([args, env]) => runCli(args, { env, cwd })));
    const wrong = results.flatMap((result, i) => {
      const [args, env] = cases[i]!;
      const ok = result.code === 2 && errorLines(result.stderr).length === 1 && errorLines(result.stderr)[0]!.includes('invalid job id');
      return ok ? [] : [`${args.join(' ')} (${env.R2D1_API_TOKEN ? 'R2 + D1' : 'R2-only'}): exit ${result.code}, stdout ${JSON.stringify(result.stdout.trim())}`];
    });
    expect(wrong).toEqual([]);
  });

  it('a bucket object whose key climbs out of the prefix is not written outside --dest', async () => {
    const cwd = await tempDir();
    const prefix = uniqueJobId('data');
    const { bucket } = rig();
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: `${prefix}/ok.txt`, Body: 'fine' }));
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: `${prefix}/..\\..\\escape.txt`, Body: 'evil' }));
    const result = await runCli(['pull', `r2://${prefix}`, '--dest', 'inner/d'], { env: fullEnv(), cwd });
    expect(result.code).not.toBe(0);
    expect(expectOneLineError(result)).toMatch(/refusing/);
    expect(existsSync(join(cwd, 'escape.txt'))).toBe(false);
    expect(existsSync(join(cwd, 'inner', 'escape.txt'))).toBe(false);
  });

  it('a committed manifest listing a file path that climbs out is skipped: pull falls back to the good version', async () => {
    const cwd = await tempDir();
    const job = uniqueJobId('badmanifest');
    const good = await writeCheckpoint(join(cwd, 'out'), 'ck', 1, { 'w.bin': 1000 });
    expectExit(await runCli(['ship', 'out', '--job-id', job], { env: fullEnv(), cwd }), 0);
    // A newer, higher-epoch "commit" whose manifest points a file outside the destination.
    const version = `e99-t${Date.now() + 60_000}-deadbeef`;
    const prefix = `jobs/${job}/ck/${version}/`;
    const manifest = {
      format: 'r2d1-manifest/1',
      jobId: job,
      name: 'ck',
      epoch: 99,
      timestamp: Date.now() / 1000 + 60,
      metadata: {},
      version,
      prefix,
      sidecarSha256: '0'.repeat(64),
      sidecar: JSON.stringify({ name: 'ck', epoch: 99 }),
      files: [{ path: '../../escape.txt', size: 4, sha256: 'a'.repeat(64) }],
      bytes: 4,
      committedAt: new Date().toISOString(),
    };
    await s3.send(new PutObjectCommand({ Bucket: rig().bucket, Key: `${prefix}w.bin`, Body: 'evil' }));
    await s3.send(new PutObjectCommand({ Bucket: rig().bucket, Key: `jobs/${job}/ck/${version}.manifest.json`, Body: JSON.stringify(manifest) }));

    // R2-only, so `latest` comes from the bucket listing, where the hostile version is the highest epoch.
    const result = await runCli(['pull', `r2://jobs/${job}/latest`, '--dest', 'inner/d', '--json'], { env: r2OnlyEnv(), cwd });
    expectExit(result, 0);
    expect(parseJson(result)).toMatchObject({ found: true, name: 'ck', epoch: 1 });
    expect(result.stderr).toContain(`${version}.manifest.json`);
    expect(result.stderr).toContain('../../escape.txt');
    expect(await hashTree(join(cwd, 'inner', 'd', 'ck'))).toEqual(good.hashes);
    expect(existsSync(join(cwd, 'escape.txt'))).toBe(false);
    expect(existsSync(join(cwd, 'inner', 'escape.txt'))).toBe(false);
  });
});

describe('watch', () => {
  it('ships as checkpoints appear; SIGTERM flushes (final scan included) and exits 0 with the report', async () => {
    const cwd = await tempDir();
    const job = uniqueJobId('watch');
    const dir = join(cwd, 'ckpt');
    const watcher = startCli(['watch', 'ckpt', '--job-id', job, '--poll-every', '1', '--json'], { env: fullEnv(), cwd, timeoutMs: 40_000 });
    await waitFor('watch to start', () => watcher.stderr.includes('watching') || watcher.child.exitCode !== null, 10_000);
    expect(watcher.child.exitCode).toBeNull();

    const a = await writeCheckpoint(dir, 'ck_a', 1, { 'w.bin': 200_000 });
    await waitFor(
      'ck_a to be listed',
      async () => {
        const ls = await runCli(['ls', '--job-id', job, '--json'], { env: fullEnv(), cwd });
        expectExit(ls, 0);
        return parseJson(ls).checkpoints.some((c: { name: string }) => c.name === 'ck_a');
      },
      15_000,
      200,
    );

    // Written just before the signal: the flush's final scan must still ship it.
    const b = await writeCheckpoint(dir, 'ck_b', 2, { 'w.bin': 300_000 });
    const result = await watcher.stop('SIGTERM', 30_000);
    expectExit(result, 0);
    const report = parseJson(result);
    expect(report.ok).toBe(true);
    expect(names(report.shipped)).toEqual(['ck_a', 'ck_b']);

    const ls = await runCli(['ls', '--job-id', job, '--json'], { env: fullEnv(), cwd });
    expect(parseJson(ls).checkpoints.map((c: { name: string; epoch: number }) => [c.name, c.epoch])).toEqual([
      ['ck_b', 2],
      ['ck_a', 1],
    ]);
    const pulled = await runCli(['pull', `r2://jobs/${job}/latest`, '--dest', 'back', '--json'], { env: fullEnv(), cwd });
    expectExit(pulled, 0);
    expect(parseJson(pulled)).toMatchObject({ found: true, name: 'ck_b', epoch: 2 });
    expect(await hashTree(join(cwd, 'back', 'ck_b'))).toEqual(b.hashes);
    const first = await runCli(['pull', `r2://jobs/${job}/ck_a`, '--dest', 'back', '--json'], { env: fullEnv(), cwd });
    expect(parseJson(first)).toMatchObject({ found: true, name: 'ck_a', epoch: 1 });
    expect(await hashTree(join(cwd, 'back', 'ck_a'))).toEqual(a.hashes);
  });
});

describe('kill -9 mid-upload, then restart', () => {
  it('commits nothing partial; the next ship completes it byte-identical, and a further ship uploads nothing', async () => {
    const cwd = await tempDir();
    const dir = join(cwd, 'ckpt');
    const files: Record<string, number> = {};
    for (let i = 0; i < 40; i++) files[`shard-${String(i).padStart(2, '0')}.bin`] = 2 * 1024 * 1024;
    const ck = await writeCheckpoint(dir, 'big', 5, files);

    let job = '';
    let caught = false;
    for (let attempt = 0; attempt < 4 && !caught; attempt++) {
      job = uniqueJobId('kill');
      const watcher = startCli(['watch', 'ckpt', '--job-id', job, '--poll-every', '1'], { env: fullEnv(), cwd, timeoutMs: 40_000 });
      try {
        const keys = await waitFor(
          'a first object under the job',
          async () => {
            const k = await listKeys(`jobs/${job}/`, s3);
            return k.length > 0 ? k : watcher.child.exitCode !== null ? ['(exited)'] : undefined;
          },
          15_000,
          5,
        );
        if (keys[0] === '(exited)') throw new Error(`watch exited early: ${show(await watcher.exited)}`);
        const manifests = keys.filter((k) => k.endsWith('.manifest.json'));
        for (const m of manifests) {
          // A manifest may only exist once every file of its version is in the bucket.
          const data = keys.filter((k) => k.startsWith(m.replace(/\.manifest\.json$/, '/')));
          expect([m, data.length]).toEqual([m, 40]);
        }
        if (manifests.length > 0) continue; // too late: the upload completed; try again
        caught = true;
      } finally {
        await watcher.stop('SIGKILL', 5_000);
      }
    }
    if (!caught) throw new Error('could not catch the upload between its first object and its manifest in 4 tries');

    // Give requests that were in flight when the process died time to land (or not).
    await new Promise((r) => setTimeout(r, 300));
    const afterKill = await listKeys(`jobs/${job}/`, s3);
    expect(afterKill.length).toBeGreaterThan(0);
    expect(afterKill.filter((k) => k.endsWith('.manifest.json'))).toEqual([]);
    // Invisible to readers.
    const ls = await runCli(['ls', '--job-id', job, '--json'], { env: fullEnv(), cwd });
    expect(parseJson(ls).checkpoints).toEqual([]);
    const fresh = await runCli(['pull', `r2://jobs/${job}/latest`, '--dest', 'none', '--json'], { env: fullEnv(), cwd });
    expect(parseJson(fresh)).toMatchObject({ found: false });

    const shipped = await runCli(['ship', 'ckpt', '--job-id', job, '--json'], { env: fullEnv(), cwd, timeoutMs: 40_000 });
    expectExit(shipped, 0);
    const report = parseJson(shipped);
    expect(report).toMatchObject({ ok: true, failed: [] });
    expect(report.shipped.map((s: { name: string; epoch: number; files: number }) => [s.name, s.epoch, s.files])).toEqual([['big', 5, 40]]);

    // The abandoned upload's objects are swept by the commit: only the committed version remains.
    const keys = await listKeys(`jobs/${job}/`, s3);
    const manifests = keys.filter((k) => k.endsWith('.manifest.json'));
    expect(manifests).toHaveLength(1);
    const versionPrefix = manifests[0]!.replace(/\.manifest\.json$/, '/');
    expect(keys.filter((k) => k !== manifests[0] && !k.startsWith(versionPrefix))).toEqual([]);
    const manifest = JSON.parse(
      await (await s3.send(new GetObjectCommand({ Bucket: rig().bucket, Key: manifests[0]! }))).Body!.transformToString(),
    );
    expect(manifest.files).toHaveLength(40);

    const pulled = await runCli(['pull', `r2://jobs/${job}/latest`, '--dest', 'back', '--json'], { env: fullEnv(), cwd, timeoutMs: 40_000 });
    expectExit(pulled, 0);
    expect(parseJson(pulled)).toMatchObject({ found: true, name: 'big', epoch: 5, files: 40 });
    expect(await hashTree(join(cwd, 'back', 'big'))).toEqual(ck.hashes);

    const again = await runCli(['ship', 'ckpt', '--job-id', job, '--json'], { env: fullEnv(), cwd });
    expectExit(again, 0);
    expect(parseJson(again)).toMatchObject({ ok: true, shipped: [], failed: [] });
  });
});

describe('run', () => {
  /** A training stand-in: writes checkpoints `name:epoch,...` under argv[1], then exits with argv[3]. */
  const TRAIN = `
const fs = require('fs'), path = require('path'), crypto = require('crypto');
const [dir, list, code] = process.argv.slice(1);
for (const spec of list.split(',')) {
  const [name, epoch] = spec.split(':');
  fs.mkdirSync(path.join(dir, name, 'sub'), { recursive: true });
  fs.writeFileSync(path.join(dir, name, 'weights.bin'), crypto.randomBytes(400000));
  fs.writeFileSync(path.join(dir, name, 'sub', 'opt.bin'), crypto.randomBytes(1000));
  fs.writeFileSync(path.join(dir, name + '.json'), JSON.stringify({ name, epoch: Number(epoch), timestamp: Date.now() / 1000, files: ['weights.bin', 'sub/opt.bin'], metadata: {} }));
}
process.stderr.write('train: done; r2d1 variables seen: ' + Object.keys(process.env).filter((k) => k.startsWith('R2D1_')).length + '\\n');
process.exit(Number(code));
`;
  /** Resuming stand-in: reads the pulled sidecar in argv[1], prints its epoch, writes the next one. */
  const RESUME = `
const fs = require('fs'), path = require('path');
const dir = process.argv[1];
const sidecars = fs.readdirSync(dir).filter((f) => f.endsWith('.json'));
if (sidecars.length !== 1) { console.error('expected one pulled sidecar, got ' + sidecars); process.exit(9); }
const s = JSON.parse(fs.readFileSync(path.join(dir, sidecars[0]), 'utf8'));
if (!fs.existsSync(path.join(dir, s.name, 'weights.bin'))) { console.error('pulled folder missing'); process.exit(8); }
console.log('resumed epoch=' + s.epoch);
const next = 'ck_next';
fs.mkdirSync(path.join(dir, next), { recursive: true });
fs.writeFileSync(path.join(dir, next, 'weights.bin'), 'x'.repeat(1000));
fs.writeFileSync(path.join(dir, next + '.json'), JSON.stringify({ name: next, epoch: s.epoch + 1, timestamp: Date.now() / 1000, metadata: {} }));
`;
  const job = uniqueJobId('run');
  let firstCwd = '';

  it('ships the checkpoints the command wrote, and exits 0 when it does', async () => {
    const cwd = (firstCwd = await tempDir());
    const result = await runCli(
      ['run', '--watch', 'ckpt', '--job-id', job, '--poll-every', '1', '--json', '--', 'node', '-e', TRAIN, 'ckpt', 'ck_a:1,ck_b:2', '0'],
      { env: fullEnv(), cwd, timeoutMs: 40_000 },
    );
    expectExit(result, 0);
    // The command runs without r2d1's credentials in its environment.
    expect(result.stderr).toContain('train: done; r2d1 variables seen: 0');
    const report = parseJson(result); // the command printed nothing on stdout: stdout is the report alone
    expect(report).toMatchObject({ ok: true, exitCode: 0, failed: [] });
    expect(names(report.shipped)).toEqual(['ck_a', 'ck_b']);

    const pulled = await runCli(['pull', `r2://jobs/${job}/latest`, '--dest', 'back', '--json'], { env: fullEnv(), cwd });
    expect(parseJson(pulled)).toMatchObject({ found: true, name: 'ck_b', epoch: 2 });
    expect(await hashTree(join(cwd, 'back', 'ck_b'))).toEqual(await hashTree(join(cwd, 'ckpt', 'ck_b')));
  });

  it("exits with the command's exit code, and still ships what it wrote before failing", async () => {
    const cwd = await tempDir();
    const failJob = uniqueJobId('runfail');
    const result = await runCli(
      ['run', '--watch', 'ckpt', '--job-id', failJob, '--json', '--', 'node', '-e', TRAIN, 'ckpt', 'ck_a:1,ck_b:2', '3'],
      { env: fullEnv(), cwd, timeoutMs: 40_000 },
    );
    expectExit(result, 3);
    const report = parseJson(result);
    expect(report).toMatchObject({ ok: true, exitCode: 3 });
    expect(names(report.shipped)).toEqual(['ck_a', 'ck_b']);
    const ls = await runCli(['ls', '--job-id', failJob, '--json'], { env: fullEnv(), cwd });
    expect(names(parseJson(ls).checkpoints)).toEqual(['ck_a', 'ck_b']);
  });

  it('--pull resumes: the command reads the pulled sidecar, and only new checkpoints are shipped', async () => {
    expect(firstCwd).not.toBe(''); // needs the job shipped by the first test
    const cwd = await tempDir();
    const result = await runCli(
      ['run', '--pull', `r2://jobs/${job}/latest`, '--dest', 'ckpt', '--watch', 'ckpt', '--job-id', job, '--json', '--', 'node', '-e', RESUME, 'ckpt'],
      { env: r2OnlyEnv(), cwd, timeoutMs: 40_000 },
    );
    expectExit(result, 0);
    // With --json, stdout is r2d1's report alone; the command's own output goes to stderr.
    expect(result.stderr).toContain('resumed epoch=2');
    expect(result.stdout).not.toContain('resumed');
    const report = parseJson(result);
    expect(report).toMatchObject({ ok: true, exitCode: 0, failed: [] });
    expect(report.pulled).toMatchObject({ found: true, name: 'ck_b', epoch: 2 });
    expect(report.shipped.map((s: { name: string; epoch: number }) => [s.name, s.epoch])).toEqual([['ck_next', 3]]);
    expect(count(result.stderr, R2_ONLY_WARNING)).toBe(1);

    const ls = await runCli(['ls', '--job-id', job, '--json'], { env: fullEnv(), cwd });
    expect(parseJson(ls).checkpoints.map((c: { name: string; epoch: number }) => [c.name, c.epoch])).toEqual([
      ['ck_next', 3],
      ['ck_b', 2],
      ['ck_a', 1],
    ]);
  });
});

describe('stderr', () => {
  /** r2d1's own stderr lines: timestamped logs, and the final `r2d1: ...` error line. */
  const OWN_LINE = /^(r2d1: |\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z r2d1 (debug|info|warn|error) )/;
  const foreign = (stderr: string) => stderr.split('\n').filter((l) => l.trim() !== '' && !OWN_LINE.test(l));

  it('holds only r2d1 lines: no third-party warnings on a working command or beside an error', async () => {
    const cwd = await tempDir();
    const ls = await runCli(['ls', '--job-id', uniqueJobId('quiet')], { env: fullEnv(), cwd });
    expectExit(ls, 0);
    expect(foreign(ls.stderr)).toEqual([]);

    const port = await closedPort();
    const down = await runCli(['ls', '--job-id', uniqueJobId('quiet')], {
      env: fullEnv({ R2D1_R2_ENDPOINT_URL: `http://127.0.0.1:${port}` }),
      cwd,
      timeoutMs: 40_000,
    });
    expect(down.code).toBe(1);
    expect(foreign(down.stderr)).toEqual([]);
  });
});

describe('--json', () => {
  it('every command prints exactly one JSON document on stdout, logs on stderr', async () => {
    const cwd = await tempDir();
    const job = uniqueJobId('json');
    await mkdir(join(cwd, 'empty'));
    const runs: [string[], number][] = [
      [['secrets', '--json'], 0],
      [['pull', `r2://jobs/${job}/latest`, '--dest', 'd', '--json'], 0],
      [['pull', `r2://${job}-nothing`, '--dest', 'd', '--json'], 0],
      [['ship', 'empty', '--job-id', job, '--json'], 0],
      [['ls', '--job-id', job, '--json'], 0],
      [['status', '--job-id', job, '--json'], 0],
      [['pull', 's3://x', '--dest', 'd', '--json'], 2],
      [['nope', '--json'], 2],
    ];
    const results = await Promise.all(runs.map(([args]) => runCli(args, { env: fullEnv(), cwd })));
    for (const [i, [args, code]] of runs.entries()) {
      const result = results[i]!;
      expectExit(result, code);
      const lines = result.stdout.trim().split('\n');
      if (lines.length !== 1) throw new Error(`${args.join(' ')}: expected one line of JSON, got ${show(result)}`);
      const value = parseJson(result);
      expect(typeof value).toBe('object');
      if (code !== 0) expect(value).toMatchObject({ ok: false, error: expect.any(String) });
    }
    expect(await readdir(join(cwd, 'empty'))).toEqual([]);
  });
});
