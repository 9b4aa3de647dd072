import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { openBackends, type Backends } from './backends.js';
import { Catalog, type CommittedCheckpoint } from './catalog.js';
import { loadConfig, withDotEnv, type Env } from './config.js';
import { R2d1Error, describeError } from './errors.js';
import { findCollision, localPathUnder } from './keys.js';
import { parseR2Uri, type Manifest } from './layout.js';
import { consoleLogger, type Logger } from './logger.js';
import { Pool, forEachAbortable } from './pool.js';
import { sha256 } from './sidecar.js';
import type { ObjectInfo } from './store.js';
import { downloadFile, hashFile, type Planned, type Progress } from './transfer.js';

export interface FetchInfo {
  /** False on a fresh start (nothing committed yet); never an error. */
  found: boolean;
  source: string;
  localDir: string;
  name?: string;
  epoch?: number;
  metadata?: Record<string, unknown>;
  /** True when everything was already on disk and verified: nothing was downloaded. */
  cached: boolean;
  /** Bytes of the checkpoint or prefix (downloaded or not). */
  bytes: number;
  files: number;
  /** Bytes actually transferred. */
  downloaded: number;
  /** Version key prefix in the bucket (checkpoints only). */
  key?: string;
}

export interface PullOptions {
  dest: string;
  /** Download even what is on disk and verified. */
  force?: boolean;
  /**
   * Re-hash a checkpoint already on disk against the manifest before trusting it, instead of its
   * recorded sizes and times: for files that arrived another way (restored from a cache).
   */
  verify?: boolean;
}

export interface FetcherTuning {
  fileConcurrency: number;
  /** Files above this size come as parallel ranged parts of this size. */
  partSize: number;
  partsInFlight: number;
  /** Large files downloaded at once (their parts are written as they arrive: memory does not grow with partSize). */
  bigFileConcurrency: number;
}

/** From bench/ measurements: 64 MiB ranges, 8 at once, pulled fastest at the same memory as 8 MiB ones. */
export const DEFAULT_FETCHER_TUNING: FetcherTuning = {
  fileConcurrency: 32,
  partSize: 64 * 1024 * 1024,
  partsInFlight: 8,
  bigFileConcurrency: 2,
};

/** Versions tried, newest first, before a pull gives up (each one deleted or broken under us). */
const MAX_VERSIONS_TRIED = 10;
/** Bookkeeping beside the pulled folders: temp downloads and what was verified. */
const STATE_DIR = '.r2d1';

interface LandedRecord {
  version: string;
  files: { path: string; size: number; mtimeMs: number }[];
}

/**
 * Pulls checkpoints and prefixes from the bucket to local disk. Every file is verified (size and
 * SHA-256 from the manifest) before the folder is renamed into place: a reader never sees a
 * partial or mixed checkpoint.
 */
export class Fetcher {
  readonly catalog: Catalog;
  private readonly logger: Logger;
  private readonly tuning: FetcherTuning;
  private readonly onProgress?: Progress;
  private readonly onPlanned?: Planned;

  constructor(
    private readonly backends: Backends,
    opts: { logger?: Logger; tuning?: Partial<FetcherTuning>; onProgress?: Progress; onPlanned?: Planned } = {},
  ) {
    this.logger = opts.logger ?? consoleLogger();
    this.tuning = { ...DEFAULT_FETCHER_TUNING, ...opts.tuning };
    this.onProgress = opts.onProgress;
    this.onPlanned = opts.onPlanned;
    this.catalog = new Catalog(backends.store, backends.d1, this.logger);
  }

  static fromEnv(env: Env = process.env, opts: ConstructorParameters<typeof Fetcher>[1] = {}): Fetcher {
    const logger = opts.logger ?? consoleLogger();
    return new Fetcher(openBackends(loadConfig(withDotEnv(env)), logger), { ...opts, logger });
  }

  /**
   * `r2://jobs/<id>/latest` and `r2://jobs/<id>/<name>` land in `dest/<name>/` with the sidecar at
   * `dest/<name>.json`; `r2://<prefix>` mirrors the prefix into `dest/`. A fresh start returns
   * `found: false`; an unreachable or misconfigured bucket is an error, never a fresh start.
   */
  async pull(uri: string, opts: PullOptions): Promise<FetchInfo> {
    const target = parseR2Uri(uri);
    const dest = resolve(opts.dest);
    if (target.kind === 'prefix') return this.mirror(uri, target.prefix, dest, opts.force ?? false);
    // A version can turn out unusable while it is pulled: deleted by the courier (a newer one was
    // committed), or a file missing or corrupt in the bucket. Then the next newest one is tried.
    const unusable = new Set<string>();
    const problems: R2d1Error[] = [];
    let lastError: unknown;
    for (let attempt = 1; attempt <= MAX_VERSIONS_TRIED; attempt++) {
      const read = { skip: unusable, problems };
      const found =
        target.kind === 'latest'
          ? await this.catalog.latest(target.jobId, read)
          : await this.catalog.latestOfSlot(target.jobId, target.name, read);
      if (!found) break;
      try {
        return await this.land(uri, found, dest, opts);
      } catch (err) {
        if (!(err instanceof R2d1Error && (err.code === 'NOT_FOUND' || err.code === 'VERIFY'))) throw err;
        unusable.add(found.ref.version);
        lastError = err;
        this.logger.warn(`${found.manifest.prefix} cannot be pulled (${describeError(err)}); trying the next newest committed version`);
      }
    }
    // Committed versions exist but none could be pulled, or only broken manifests: an error, never a fresh start.
    if (lastError ?? problems[0]) throw lastError ?? problems[0];
    return { found: false, source: uri, localDir: dest, cached: false, bytes: 0, files: 0, downloaded: 0 };
  }

  close(): void {
    this.backends.store.close();
  }

  /**
   * What `pull(uri)` would fetch, without fetching it: a fingerprint of the remote content (the
   * committed version for checkpoints; keys, sizes and ETags for prefixes) and the local paths a pull
   * into `dest` writes. For caches keyed by remote content.
   */
  async resolve(uri: string, dest: string): Promise<{ found: boolean; fingerprint: string; paths: string[] }> {
    const target = parseR2Uri(uri);
    const root = resolve(dest);
    if (target.kind === 'prefix') {
      const { objects } = await this.backends.store.list(target.prefix);
      const listing = objects.map((o) => `${o.key}\t${o.size}\t${o.etag ?? o.lastModified?.getTime() ?? ''}`).join('\n');
      return { found: objects.length > 0, fingerprint: sha256(listing), paths: [root] };
    }
    const found = target.kind === 'latest' ? await this.catalog.latest(target.jobId) : await this.catalog.latestOfSlot(target.jobId, target.name);
    if (!found) return { found: false, fingerprint: '', paths: [] };
    const { name, prefix } = found.manifest;
    return {
      found: true,
      fingerprint: sha256(`${prefix}\n${found.manifest.files.map((f) => `${f.path}\t${f.size}\t${f.sha256}`).join('\n')}`),
      paths: [localPathUnder(root, name, 'checkpoint name'), join(root, `${name}.json`), join(root, STATE_DIR, `${name}.json`)],
    };
  }

  private async land(source: string, { manifest }: CommittedCheckpoint, dest: string, opts: PullOptions): Promise<FetchInfo> {
    const localDir = localPathUnder(dest, manifest.name, 'checkpoint name');
    const info: FetchInfo = {
      found: true,
      source,
      localDir,
      name: manifest.name,
      epoch: manifest.epoch,
      metadata: manifest.metadata,
      cached: false,
      bytes: manifest.bytes,
      files: manifest.files.length,
      downloaded: 0,
      key: manifest.prefix,
    };
    const recordPath = join(dest, STATE_DIR, `${manifest.name}.json`);
    if (!opts.force && (await this.isLanded(recordPath, localDir, manifest, opts.verify ?? false))) {
      this.logger.info(`${manifest.name} epoch ${manifest.epoch} is already in ${localDir} and unchanged; nothing to download`);
      return { ...info, cached: true };
    }
    const temp = join(dest, STATE_DIR, `tmp-${manifest.name}-${randomBytes(4).toString('hex')}`);
    try {
      this.onPlanned?.(manifest.bytes);
      info.downloaded = await this.downloadManifest(manifest, temp);
      await rm(recordPath, { force: true });
      await replaceDir(temp, localDir, join(dest, STATE_DIR));
    } finally {
      await rm(temp, { recursive: true, force: true });
    }
    await writeAtomic(join(dest, `${manifest.name}.json`), manifest.sidecar);
    const files = await Promise.all(
      manifest.files.map(async (f) => ({ path: f.path, size: f.size, mtimeMs: (await stat(localPathUnder(localDir, f.path, 'file'))).mtimeMs })),
    );
    await writeAtomic(recordPath, JSON.stringify({ version: manifest.version, files } satisfies LandedRecord));
    this.logger.info(`pulled ${manifest.name} epoch ${manifest.epoch} into ${localDir}: ${manifest.files.length} files verified (SHA-256)`);
    return info;
  }

  /** Downloads every file of the manifest under `dir`, verifying size and SHA-256; returns bytes moved. */
  private async downloadManifest(manifest: Manifest, dir: string): Promise<number> {
    await mkdir(dir, { recursive: true });
    const small = new Pool(this.tuning.fileConcurrency);
    const big = new Pool(this.tuning.bigFileConcurrency);
    let bytes = 0;
    await forEachAbortable(manifest.files, small, undefined, async (file, signal) => {
      const path = localPathUnder(dir, file.path, `file in ${manifest.prefix}`);
      const fetch = () =>
        downloadFile(this.backends.store, manifest.prefix + file.path, file.size, path, { ...this.tuning, signal, onProgress: this.onProgress });
      const hash = file.size > this.tuning.partSize ? await big.run(fetch) : await fetch();
      if (hash !== file.sha256) {
        throw new R2d1Error('VERIFY', `${manifest.prefix}${file.path} does not match its manifest (SHA-256 ${hash}, expected ${file.sha256})`, {
          hint: 'the stored object is corrupt or was replaced; nothing was put in place. Re-ship the checkpoint or pull an older one',
        });
      }
      bytes += file.size;
    });
    return bytes;
  }

  /**
   * Landed before, and every file still has the size and mtime it had when it was verified (or,
   * with `rehash`, the manifest's SHA-256).
   */
  private async isLanded(recordPath: string, localDir: string, manifest: Manifest, rehash: boolean): Promise<boolean> {
    try {
      const record = JSON.parse(await readFile(recordPath, 'utf8')) as LandedRecord;
      if (record.version !== manifest.version || record.files.length !== manifest.files.length) return false;
      for (const f of record.files) {
        const info = await stat(localPathUnder(localDir, f.path, 'file'));
        if (info.size !== f.size || info.mtimeMs !== f.mtimeMs) return false;
      }
      if (rehash) {
        for (const f of manifest.files) {
          if ((await hashFile(localPathUnder(localDir, f.path, 'file'))) !== f.sha256) return false;
        }
      }
      return true;
    } catch {
      return false;
    }
  }

  /**
   * Mirrors every object under `prefix` into `dest`, skipping files already there with the same
   * size and content (MD5 against a plain ETag; size and time for multipart ETags). Each file
   * lands by rename after it is verified, so no file is ever partial.
   */
  private async mirror(source: string, prefix: string, dest: string, force: boolean): Promise<FetchInfo> {
    const objects = (await this.backends.store.list(prefix)).objects.filter((o) => !(o.key.endsWith('/') && o.size === 0));
    const entries = objects.map((o) => ({ object: o, path: localPathUnder(dest, o.key.slice(prefix.length), `object ${o.key}`) }));
    const collision = findCollision(objects.map((o) => o.key.slice(prefix.length)));
    if (collision) {
      throw new R2d1Error('UNSAFE_KEY', `objects ${JSON.stringify(collision[0])} and ${JSON.stringify(collision[1])} under ${prefix} would land on the same path`, {
        hint: 'rename one of them in the bucket',
      });
    }
    const info: FetchInfo = { found: objects.length > 0, source, localDir: dest, cached: false, bytes: 0, files: objects.length, downloaded: 0 };
    if (objects.length === 0) return info;
    let skipped = 0;
    const small = new Pool(this.tuning.fileConcurrency);
    const big = new Pool(this.tuning.bigFileConcurrency);
    await forEachAbortable(entries, small, undefined, async ({ object, path }, signal) => {
      info.bytes += object.size;
      if (!force && (await sameContent(path, object))) {
        skipped++;
        return;
      }
      this.onPlanned?.(object.size);
      const md5 = plainMd5(object.etag);
      const temp = `${path}.r2d1-tmp-${randomBytes(4).toString('hex')}`;
      try {
        const fetch = () =>
          downloadFile(this.backends.store, object.key, object.size, temp, {
            ...this.tuning,
            signal,
            onProgress: this.onProgress,
            algorithm: 'md5',
          });
        const hash = object.size > this.tuning.partSize ? await big.run(fetch) : await fetch();
        if (md5 && hash !== md5) {
          throw new R2d1Error('VERIFY', `${object.key} does not match its ETag (MD5 ${hash}, expected ${md5})`, {
            hint: 'the object changed during the download or is corrupt; pull again',
            retryable: true,
          });
        }
        if (object.lastModified) await utimes(temp, object.lastModified, object.lastModified);
        await rename(temp, path);
      } finally {
        await rm(temp, { force: true });
      }
      info.downloaded += object.size;
    });
    info.cached = skipped === objects.length;
    this.logger.info(`mirrored ${source} into ${dest}: ${objects.length - skipped} downloaded, ${skipped} already present`);
    return info;
  }

  /** Every committed checkpoint of the job (the newest version of each slot), highest epoch first. */
  async list(jobId: string): Promise<CommittedCheckpoint[]> {
    const found: CommittedCheckpoint[] = [];
    for (const name of await this.catalog.slotNames(jobId)) {
      const latest = await this.catalog.latestOfSlot(jobId, name);
      if (latest) found.push(latest);
    }
    return found.sort((a, b) => b.manifest.epoch - a.manifest.epoch || b.manifest.timestamp - a.manifest.timestamp);
  }
}

/** The MD5 a single-part upload's ETag is; undefined for multipart (`…-N`) or missing ETags. */
function plainMd5(etag: string | undefined): string | undefined {
  const value = etag?.replace(/"/g, '');
  return value && /^[0-9a-f]{32}$/.test(value) ? value : undefined;
}

async function sameContent(path: string, object: ObjectInfo): Promise<boolean> {
  const local = await stat(path).catch(() => undefined);
  if (!local?.isFile() || local.size !== object.size) return false;
  const md5 = plainMd5(object.etag);
  if (md5) return (await hashFile(path, 'md5')) === md5;
  // No content hash to compare: the time r2d1 set when it downloaded the file.
  return object.lastModified !== undefined && Math.abs(local.mtimeMs - object.lastModified.getTime()) < 1000;
}

/** Puts `from` at `to`, moving an existing `to` aside first; the old one is removed afterwards. */
async function replaceDir(from: string, to: string, scratch: string): Promise<void> {
  const old = join(scratch, `old-${randomBytes(4).toString('hex')}`);
  const hadOld = await rename(to, old).then(
    () => true,
    (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return false;
      throw err;
    },
  );
  await mkdir(dirname(to), { recursive: true });
  await rename(from, to);
  if (hadOld) await rm(old, { recursive: true, force: true });
}

async function writeAtomic(path: string, content: string): Promise<void> {
  const temp = `${path}.r2d1-tmp-${randomBytes(4).toString('hex')}`;
  await writeFile(temp, content);
  await rename(temp, path);
}

