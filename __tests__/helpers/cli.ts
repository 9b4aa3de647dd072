/**
 * Helpers for end-to-end tests of the built CLI (lib/cli/index.js), run as a child process the way
 * users run it: a minimal environment (PATH, HOME + what the test passes), a temp working directory.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { S3Client } from '@aws-sdk/client-s3';
import { rigS3Client } from '../rig/rig.js';
import { sha256 } from './checkpoints.js';

export const REPO_ROOT = resolve(fileURLToPath(new URL('.', import.meta.url)), '..', '..');
/** The built CLI; R2D1_TEST_CLI points the tests at another build (e.g. a bundle) instead. */
export const CLI_PATH = process.env.R2D1_TEST_CLI ? resolve(process.env.R2D1_TEST_CLI) : join(REPO_ROOT, 'lib', 'cli', 'index.js');

export type Env = Record<string, string>;

/** PATH and HOME only, plus `vars`: nothing else from the test process leaks into the CLI. */
export function cliEnv(vars: Env = {}): Env {
  const env: Env = {};
  if (process.env.PATH) env.PATH = process.env.PATH;
  if (process.env.HOME) env.HOME = process.env.HOME;
  return { ...env, ...vars };
}

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
  timedOut: boolean;
}

export interface CliOptions {
  env: Env;
  cwd: string;
  /** Kill (SIGKILL) after this long; the result has timedOut = true. */
  timeoutMs?: number;
}

/** A CLI process running in the background. */
export interface CliHandle {
  child: ChildProcess;
  readonly stdout: string;
  readonly stderr: string;
  /** Resolves when the process has exited (never rejects). */
  exited: Promise<CliResult>;
  /** Sends a signal, then waits (bounded) for the exit. */
  stop(signal: NodeJS.Signals, timeoutMs?: number): Promise<CliResult>;
}

const running = new Set<ChildProcess>();

/** Starts `node lib/cli/index.js ...args` without waiting for it. */
export function startCli(args: string[], opts: CliOptions): CliHandle {
  const started = Date.now();
  const child = spawn(process.execPath, [CLI_PATH, ...args], { cwd: opts.cwd, env: opts.env, stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(child);
  let stdout = '';
  let stderr = '';
  let timedOut = false;
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill('SIGKILL');
  }, opts.timeoutMs ?? 30_000);
  const exited = new Promise<CliResult>((resolvePromise) => {
    const finish = (code: number | null, signal: NodeJS.Signals | null) => {
      clearTimeout(timer);
      running.delete(child);
      resolvePromise({ code, signal, stdout, stderr, ms: Date.now() - started, timedOut });
    };
    child.on('error', (err) => {
      stderr += `spawn error: ${err.message}\n`;
      finish(null, null);
    });
    // 'close' waits for stdio to be drained as well.
    child.on('close', finish);
  });
  return {
    child,
    get stdout() {
      return stdout;
    },
    get stderr() {
      return stderr;
    },
    exited,
    async stop(signal, timeoutMs = 30_000) {
      child.kill(signal);
      const guard = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      try {
        return await exited;
      } finally {
        clearTimeout(guard);
      }
    },
  };
}

/** Runs the CLI to completion (bounded by opts.timeoutMs, default 30 s). */
export function runCli(args: string[], opts: CliOptions): Promise<CliResult> {
  return startCli(args, opts).exited;
}

/** Kills (SIGKILL) every CLI process still running; for afterAll. */
export function killAllStarted(): void {
  for (const child of running) child.kill('SIGKILL');
}

/** Parses stdout as exactly one JSON document, with a readable failure. */
export function parseJson<T = any>(result: Pick<CliResult, 'stdout' | 'stderr'>, text = result.stdout): T {
  try {
    return JSON.parse(text) as T;
  } catch {
    throw new Error(`stdout is not JSON:\n--- stdout ---\n${result.stdout}\n--- stderr ---\n${result.stderr}`);
  }
}

/** A compact description of a result for assertion messages. */
export function show(result: CliResult): string {
  return `exit ${result.code}${result.signal ? ` (${result.signal})` : ''}${result.timedOut ? ' TIMED OUT' : ''} after ${result.ms} ms\n--- stdout ---\n${result.stdout}\n--- stderr ---\n${result.stderr}`;
}

export { closedPort, hashTree, listKeys, sha256, waitFor } from './checkpoints.js';

export interface WrittenCheckpoint {
  name: string;
  epoch: number;
  /** relative path (posix) → sha256 of every file in the folder */
  hashes: Record<string, string>;
  sidecar: string;
}

/**
 * Writes `<dir>/<name>/` with random files of the given sizes, then the sidecar `<dir>/<name>.json`
 * (last, as the convention requires). File names may contain "/" for subfolders.
 */
export async function writeCheckpoint(
  dir: string,
  name: string,
  epoch: number,
  files: Record<string, number>,
  extra: { metadata?: Record<string, unknown>; sidecarName?: string } = {},
): Promise<WrittenCheckpoint> {
  const folder = join(dir, name);
  await mkdir(folder, { recursive: true });
  const hashes: Record<string, string> = {};
  for (const [path, size] of Object.entries(files)) {
    const data = randomBytes(size);
    const full = join(folder, ...path.split('/'));
    await mkdir(join(full, '..'), { recursive: true });
    await writeFile(full, data);
    hashes[path] = sha256(data);
  }
  const sidecar = JSON.stringify({
    name: extra.sidecarName ?? name,
    epoch,
    timestamp: Date.now() / 1000,
    files: Object.keys(files),
    metadata: extra.metadata ?? { loss: 1 / (epoch + 1) },
  });
  await writeFile(join(dir, `${name}.json`), sidecar);
  return { name, epoch, hashes, sidecar };
}

/** An S3 client on the rig's bucket. */
export const rigS3 = (): S3Client => rigS3Client();

export async function removeAll(paths: string[]): Promise<void> {
  await Promise.all(paths.map((p) => rm(p, { recursive: true, force: true })));
}
