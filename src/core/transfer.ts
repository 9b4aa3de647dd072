import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, open, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { R2d1Error, isRetryable } from './errors.js';
import { withRetry } from './retry.js';
import type { ObjectStore } from './store.js';

export type Progress = (bytes: number) => void;
/** Bytes a transfer is about to move: with Progress, what an ETA needs. */
export type Planned = (bytes: number) => void;
export type HashAlgorithm = 'sha256' | 'md5';

/** Passes bytes through while hashing and counting them: one read pass for upload and hash. */
class HashTap extends Transform {
  readonly hash;
  bytes = 0;
  constructor(private readonly onProgress?: Progress, algorithm: HashAlgorithm = 'sha256', private readonly expected?: { size: number; path: string }) {
    super();
    this.hash = createHash(algorithm);
  }
  override _flush(done: (err?: Error | null) => void): void {
    if (this.expected && this.bytes !== this.expected.size) return done(fileChanged(this.expected.path, `read ${this.bytes} of ${this.expected.size} bytes`));
    done();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, done: () => void): void {
    this.hash.update(chunk);
    this.bytes += chunk.length;
    this.onProgress?.(chunk.length);
    this.push(chunk);
    done();
  }
}

const fileChanged = (path: string, why: string) =>
  new R2d1Error('CHANGED', `${path} changed while it was uploaded (${why}); this version is not committed`, {
    hint: 'write the checkpoint folder completely before writing its sidecar; r2d1 retries on the next event',
    retryable: true,
  });

/**
 * Uploads one local file, hashing it in the same pass. A file that is modified or replaced
 * while it is read is detected (size, mtime, inode, bytes read) and the upload reported as CHANGED.
 */
export async function uploadFile(
  store: ObjectStore,
  key: string,
  path: string,
  opts: { signal?: AbortSignal; onProgress?: Progress } = {},
): Promise<{ size: number; sha256: string }> {
  const before = await stat(path, { bigint: true });
  const tap = new HashTap(opts.onProgress, 'sha256', { size: Number(before.size), path });
  const source = createReadStream(path, { highWaterMark: 1024 * 1024, end: before.size === 0n ? undefined : Number(before.size) - 1 });
  const body = source.pipe(tap);
  source.on('error', (err) => body.destroy(err));
  // A short read fails the body (the uploader sees it); never an unhandled 'error' if it has stopped reading.
  body.on('error', () => undefined);
  await store.put(key, body, Number(before.size), { signal: opts.signal });
  const after = await stat(path, { bigint: true });
  if (tap.bytes !== Number(before.size)) throw fileChanged(path, `read ${tap.bytes} of ${before.size} bytes`);
  if (after.size !== before.size || after.mtimeNs !== before.mtimeNs || after.ino !== before.ino) {
    throw fileChanged(path, 'its size, modification time or inode moved');
  }
  return { size: tap.bytes, sha256: tap.hash.digest('hex') };
}

export interface DownloadOptions {
  signal?: AbortSignal;
  onProgress?: Progress;
  /** Objects larger than this are fetched as parallel ranged parts of this size. */
  partSize: number;
  partsInFlight: number;
  /** sha256 for manifests; md5 to compare with a plain S3 ETag. */
  algorithm?: HashAlgorithm;
}

/**
 * Downloads `key` (exactly `size` bytes) to `path` and returns its hash, computed while the bytes
 * arrive. Big objects come as ranged parts in parallel; they are written at their offsets and hashed
 * in order, with at most `partsInFlight` parts held in memory.
 */
export async function downloadFile(store: ObjectStore, key: string, size: number, path: string, opts: DownloadOptions): Promise<string> {
  await mkdir(dirname(path), { recursive: true });
  const hash = createHash(opts.algorithm ?? 'sha256');
  let received = 0;
  const count = (chunk: Buffer) => {
    received += chunk.length;
    opts.onProgress?.(chunk.length);
  };
  if (size <= opts.partSize) {
    return withRetry(
      async () => {
        const tap = new HashTap(opts.onProgress, opts.algorithm);
        await pipeline(await store.get(key, undefined, { signal: opts.signal }), tap, createWriteStream(path), { signal: opts.signal }).catch((err) => {
          throw cut(key, err);
        });
        if (tap.bytes !== size) throw sizeMismatch(key, size, tap.bytes);
        return tap.hash.digest('hex');
      },
      { retryable: isCutShort, signal: opts.signal, baseDelayMs: 200 },
    );
  }

  // A failed part stops the others instead of letting them run on.
  const stop = new AbortController();
  const signal = opts.signal ? AbortSignal.any([opts.signal, stop.signal]) : stop.signal;
  const file = await open(path, 'w');
  try {
    const partCount = Math.ceil(size / opts.partSize);
    const pending = new Map<number, Promise<Buffer>>();
    const fetchPart = async (index: number): Promise<Buffer> => {
      const start = index * opts.partSize;
      const end = Math.min(size, start + opts.partSize) - 1;
      const data = await withRetry(
        async () => {
          const chunks: Buffer[] = [];
          try {
            for await (const chunk of await store.get(key, { start, end }, { signal })) chunks.push(chunk as Buffer);
          } catch (err) {
            throw cut(key, err);
          }
          const part = Buffer.concat(chunks);
          if (part.length !== end - start + 1) throw sizeMismatch(`${key} bytes ${start}-${end}`, end - start + 1, part.length);
          return part;
        },
        { retryable: isCutShort, signal, baseDelayMs: 200 },
      );
      count(data);
      await file.write(data, 0, data.length, start);
      return data;
    };
    let next = 0;
    const launch = () => {
      while (next < partCount && pending.size < opts.partsInFlight) {
        const p = fetchPart(next);
        p.catch(() => undefined); // observed below, in order
        pending.set(next++, p);
      }
    };
    for (let index = 0; index < partCount; index++) {
      launch();
      const data = await pending.get(index)!;
      pending.delete(index);
      hash.update(data);
    }
  } catch (err) {
    stop.abort(err);
    throw err;
  } finally {
    await file.close();
  }
  if (received !== size) throw sizeMismatch(key, size, received);
  return hash.digest('hex');
}

/** A body cut mid-stream (reset, truncated answer): retryable, named after the object. */
const cut = (key: string, err: unknown) =>
  err instanceof R2d1Error || (err as { name?: string })?.name === 'AbortError'
    ? err
    : new R2d1Error('STORE', `download of ${key} was cut: ${(err as Error)?.message ?? String(err)}`, {
        hint: 'the connection broke mid-transfer; r2d1 retries',
        retryable: isRetryable(err) || /aborted|premature close/i.test(String((err as Error)?.message)),
        cause: err,
      });

/** Only a body cut short is retried here: the SDK already retried the request itself. */
export const isCutShort = (err: unknown) => err instanceof R2d1Error && err.retryable && (err.code === 'VERIFY' || / was cut: /.test(err.message));

const sizeMismatch = (what: string, expected: number, got: number) =>
  new R2d1Error('VERIFY', `${what}: expected ${expected} bytes, received ${got}`, {
    hint: 'the object changed or the transfer was cut; pull again',
    retryable: true,
  });

/** Hash of a local file (to check what is already on disk). */
export async function hashFile(path: string, algorithm: HashAlgorithm = 'sha256'): Promise<string> {
  const hash = createHash(algorithm);
  await pipeline(createReadStream(path, { highWaterMark: 1024 * 1024 }), hash);
  return hash.digest('hex');
}
