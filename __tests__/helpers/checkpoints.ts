/**
 * Test helpers for courier/fetcher tests: writing checkpoint folders the way training code does
 * (folder first, sidecar last), hashing directories, looking straight into the rig's bucket,
 * and ObjectStore wrappers around the real S3Store to inject delays, hangs and failures.
 */
import { expect } from '@jest/globals';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { dirname, join, relative, sep } from 'node:path';
import type { Readable } from 'node:stream';
import {
  DeleteObjectsCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import {
  Courier,
  loadConfig,
  openBackends,
  silentLogger,
  type Backends,
  type Listing,
  type Logger,
  type Manifest,
  type ObjectStore,
  type SequentialBody,
  type ShipReport,
} from '../../src/index.js';
import { rig, rigEnv, rigS3Client } from '../rig/rig.js';

// ---------------------------------------------------------------- hashing and files

export const sha256 = (data: string | Buffer | Uint8Array): string => createHash('sha256').update(data).digest('hex');

export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

export interface FileDigest {
  size: number;
  sha256: string;
}

/** Every regular file under `dir`, by "/"-separated relative path (sorted), with size and SHA-256. */
export async function hashDir(dir: string): Promise<Record<string, FileDigest>> {
  const out: Record<string, FileDigest> = {};
  const walk = async (d: string): Promise<void> => {
    const entries = await readdir(d, { withFileTypes: true });
    for (const e of entries) {
      const p = join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else if (e.isFile()) out[relative(dir, p).split(sep).join('/')] = { size: (await stat(p)).size, sha256: await sha256File(p) };
    }
  };
  await walk(dir);
  return Object.fromEntries(Object.entries(out).sort(([a], [b]) => (a < b ? -1 : 1)));
}

/** relative path (posix) → SHA-256 of every regular file under `root` (hashDir without the sizes). */
export async function hashTree(root: string): Promise<Record<string, string>> {
  return Object.fromEntries(Object.entries(await hashDir(root)).map(([path, digest]) => [path, digest.sha256]));
}

/** Every entry (files and directories) under `dir`, relative, sorted; [] when `dir` does not exist. */
export async function listTree(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string): Promise<void> => {
    let entries;
    try {
      entries = await readdir(d, { withFileTypes: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    for (const e of entries) {
      const p = join(d, e.name);
      out.push(relative(dir, p).split(sep).join('/') + (e.isDirectory() ? '/' : ''));
      if (e.isDirectory()) await walk(p);
    }
  };
  await walk(dir);
  return out.sort();
}

export interface CheckpointSpec {
  epoch: number;
  /** Seconds since 1970; defaults to now. */
  timestamp?: number;
  /** Relative path → content. */
  files: Record<string, string | Buffer>;
  metadata?: Record<string, unknown>;
  /** Extra/overriding sidecar fields. */
  sidecar?: Record<string, unknown>;
  /** Written verbatim as the sidecar instead of the JSON built from the fields above. */
  rawSidecar?: string;
}

/**
 * Writes `dir/<name>/` (replacing what was there) and then `dir/<name>.json` (the sidecar, last),
 * as training code does. Returns the sidecar text.
 */
export async function writeCheckpoint(dir: string, name: string, spec: CheckpointSpec): Promise<string> {
  const folder = join(dir, name);
  await rm(folder, { recursive: true, force: true });
  await mkdir(folder, { recursive: true });
  for (const [rel, content] of Object.entries(spec.files)) {
    const path = join(folder, ...rel.split('/'));
    await mkdir(dirname(path), { recursive: true });
    await writeFile(path, content);
  }
  const sidecar = {
    name,
    epoch: spec.epoch,
    timestamp: spec.timestamp ?? Date.now() / 1000,
    files: Object.keys(spec.files),
    metadata: spec.metadata ?? { loss: 1 / (spec.epoch + 1), step: spec.epoch * 100 },
    ...spec.sidecar,
  };
  const text = spec.rawSidecar ?? JSON.stringify(sidecar, null, 2);
  await writeFile(join(dir, `${name}.json`), text);
  return text;
}

export const randomFile = (bytes: number): Buffer => randomBytes(bytes);

/**
 * Writes each checkpoint into `dir` (sidecar last) and ships them all with the core's Courier, as a
 * training job would have; fails the test unless every one ships. Returns each sidecar's text.
 */
export async function shipWithCore(
  dir: string,
  job: string,
  checkpoints: Record<string, CheckpointSpec>,
  env: Record<string, string> = rigEnv(),
): Promise<{ sidecars: Record<string, string>; report: ShipReport }> {
  const sidecars: Record<string, string> = {};
  for (const [name, spec] of Object.entries(checkpoints)) sidecars[name] = await writeCheckpoint(dir, name, spec);
  const courier = new Courier(openCore(env), { logger: silentLogger, tuning: { retryBaseMs: 20, retryMaxMs: 200 } });
  try {
    const report = await courier.ship(dir, { jobId: job, timeout: 30 });
    expect(report.failed).toEqual([]);
    expect(report.ok).toBe(true);
    return { sidecars, report };
  } finally {
    courier.close();
  }
}

// ---------------------------------------------------------------- the bucket, directly

let client: S3Client | undefined;

/** An S3 client on the rig's bucket (as in __tests__/rig.test.ts). Destroy with closeS3(). */
export function s3(): S3Client {
  if (client) return client;
  client = rigS3Client();
  return client;
}

export function closeS3(): void {
  client?.destroy();
  client = undefined;
}

/** Every key under `prefix` in the rig's bucket (through `client`, or this module's shared one). */
export async function listKeys(prefix: string, client: S3Client = s3()): Promise<string[]> {
  const keys: string[] = [];
  let token: string | undefined;
  do {
    const page = await client.send(new ListObjectsV2Command({ Bucket: rig().bucket, Prefix: prefix, ContinuationToken: token }));
    for (const o of page.Contents ?? []) if (o.Key) keys.push(o.Key);
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  return keys.sort();
}

export async function getObject(key: string): Promise<Buffer> {
  const out = await s3().send(new GetObjectCommand({ Bucket: rig().bucket, Key: key }));
  return Buffer.from(await out.Body!.transformToByteArray());
}

export async function putObject(key: string, body: string | Buffer): Promise<void> {
  await s3().send(new PutObjectCommand({ Bucket: rig().bucket, Key: key, Body: body }));
}

/**
 * PutObject with the key sent percent-encoded as ONE path segment ("/" as %2F), so keys holding
 * "." or ".." segments reach the bucket verbatim instead of being folded away by URL normalisation.
 */
export async function putRawKey(key: string, body: string | Buffer): Promise<void> {
  const command = new PutObjectCommand({ Bucket: rig().bucket, Key: key, Body: body });
  command.middlewareStack.add(
    (next) => async (args) => {
      const request = args.request as { path: string };
      const marker = `/${rig().bucket}/`;
      request.path = request.path.slice(0, request.path.indexOf(marker) + marker.length) + encodeURIComponent(key);
      return next(args);
    },
    { step: 'build', name: 'r2d1TestRawKey' },
  );
  await s3().send(command);
}

export async function deleteKeys(keys: string[]): Promise<void> {
  if (keys.length === 0) return;
  await s3().send(new DeleteObjectsCommand({ Bucket: rig().bucket, Delete: { Objects: keys.map((Key) => ({ Key })), Quiet: true } }));
}

export const slotKeyPrefix = (jobId: string, name: string) => `jobs/${jobId}/${name}/`;

/** The committed manifests of a slot, as stored (parsed JSON), newest sidecar timestamp first. */
export async function manifestsOf(jobId: string, name: string): Promise<{ key: string; manifest: Manifest }[]> {
  const keys = (await listKeys(slotKeyPrefix(jobId, name))).filter((k) => k.endsWith('.manifest.json'));
  const out = [];
  for (const key of keys) out.push({ key, manifest: JSON.parse((await getObject(key)).toString('utf8')) as Manifest });
  return out.sort((a, b) => b.manifest.timestamp - a.manifest.timestamp);
}

/** Version folder names under a slot (with or without manifest). */
export async function versionFolders(jobId: string, name: string): Promise<string[]> {
  const prefix = slotKeyPrefix(jobId, name);
  const folders = new Set<string>();
  for (const key of await listKeys(prefix)) {
    const rest = key.slice(prefix.length);
    const cut = rest.indexOf('/');
    if (cut > 0) folders.add(rest.slice(0, cut));
  }
  return [...folders].sort();
}

// ---------------------------------------------------------------- waiting

/** Polls `check` until it returns a truthy value, or throws after `timeoutMs` with `what`. */
export async function waitFor<T>(what: string, check: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 10_000, everyMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value) return value;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastError ? ` (last error: ${String(lastError)})` : ''}`);
    }
    await sleep(everyMs);
  }
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Resolves when `signal` aborts or after `ms`; true if aborted. */
export function abortedWithin(signal: AbortSignal | undefined, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve(true);
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve(false);
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      resolve(true);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

// ---------------------------------------------------------------- loggers and backends

export interface CapturingLogger extends Logger {
  lines: { level: string; message: string }[];
  warnings(): string[];
}

export function capturingLogger(): CapturingLogger {
  const lines: { level: string; message: string }[] = [];
  const at = (level: string) => (message: string) => void lines.push({ level, message });
  return {
    lines,
    debug: at('debug'),
    info: at('info'),
    warn: at('warn'),
    error: at('error'),
    warnings: () => lines.filter((l) => l.level === 'warn').map((l) => l.message),
  };
}

/** Env of the rig without D1: R2-only mode. */
export const r2OnlyEnv = () => rigEnv({ R2D1_API_TOKEN: undefined, R2D1_D1_DATABASE_ID: undefined });

/** A TCP port on 127.0.0.1 that nothing listens on (bound, then released). */
export async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** A URL on 127.0.0.1 where nothing listens. */
export async function deadUrl(path = '/client/v4'): Promise<string> {
  return `http://127.0.0.1:${await closedPort()}${path}`;
}

export function openCore(env: Record<string, string> = rigEnv(), logger: Logger = silentLogger): Backends {
  return openBackends(loadConfig(env), logger);
}

// ---------------------------------------------------------------- store wrappers

export type PutHook = (
  key: string,
  body: SequentialBody | Buffer,
  size: number,
  opts: { signal?: AbortSignal } | undefined,
  next: () => Promise<void>,
) => Promise<void>;

export interface Hooks {
  put?: PutHook;
  delete?: (keys: readonly string[], next: () => Promise<void>) => Promise<void>;
  get?: (key: string, range: { start: number; end: number } | undefined, next: () => Promise<Readable>) => Promise<Readable>;
}

/** An ObjectStore around a real one, recording calls and letting a test intercept them. */
export class HookedStore implements ObjectStore {
  readonly puts: string[] = [];
  readonly gets: { key: string; range?: { start: number; end: number } }[] = [];
  readonly deletes: string[] = [];

  constructor(readonly inner: ObjectStore, private readonly hooks: Hooks = {}) {}

  get description(): string {
    return this.inner.description;
  }

  put(key: string, body: SequentialBody | Buffer, size: number, opts?: { signal?: AbortSignal }): Promise<void> {
    this.puts.push(key);
    const next = () => this.inner.put(key, body, size, opts);
    return this.hooks.put ? this.hooks.put(key, body, size, opts, next) : next();
  }

  get(key: string, range?: { start: number; end: number }, opts?: { signal?: AbortSignal }): Promise<Readable> {
    this.gets.push({ key, range });
    const next = () => this.inner.get(key, range, opts);
    return this.hooks.get ? this.hooks.get(key, range, next) : next();
  }

  list(prefix: string, opts?: { delimiter?: string }): Promise<Listing> {
    return this.inner.list(prefix, opts);
  }

  delete(keys: readonly string[]): Promise<void> {
    this.deletes.push(...keys);
    const next = () => this.inner.delete(keys);
    return this.hooks.delete ? this.hooks.delete(keys, next) : next();
  }

  close(): void {
    this.inner.close();
  }

  /** Puts of checkpoint data (not manifests). */
  dataPuts(): string[] {
    return this.puts.filter((k) => !k.endsWith('.manifest.json'));
  }
}

/** Backends from the rig whose store is wrapped in a HookedStore. */
export function hookedCore(hooks: Hooks, env: Record<string, string> = rigEnv()): { backends: Backends; store: HookedStore } {
  const backends = openCore(env);
  const store = new HookedStore(backends.store, hooks);
  backends.store = store;
  return { backends, store };
}

/** Rejects with the signal's reason once it aborts (never resolves otherwise): a put that hangs. */
export function hangUntilAborted(signal: AbortSignal | undefined): Promise<never> {
  return new Promise((_, reject) => {
    const fail = () => reject(signal?.reason ?? new Error('aborted'));
    if (signal?.aborted) return fail();
    signal?.addEventListener('abort', fail, { once: true });
  });
}
