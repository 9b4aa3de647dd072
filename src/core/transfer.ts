import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, stat, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { R2d1Error, isRetryable } from './errors.js';
import { withRetry } from './retry.js';
import { FollowingHash } from './hasher.js';
import { Pool, forEachAbortable } from './pool.js';
import type { ObjectStore, SequentialBody } from './store.js';

export type Progress = (bytes: number) => void;
/** Bytes a transfer is about to move: with Progress, what an ETA needs. */
export type Planned = (bytes: number) => void;
export type HashAlgorithm = 'sha256' | 'md5';
/** Downloaded chunks are written in batches of about this size (one writev each). */
const WRITE_BATCH_BYTES = 1024 * 1024;

const fileChanged = (path: string, why: string) =>
  new R2d1Error('CHANGED', `${path} changed while it was uploaded (${why}); this version is not committed`, {
    hint: 'write the checkpoint folder completely before writing its sidecar; r2d1 retries on the next event',
    retryable: true,
  });

/** A file read front to back into the uploader's buffers, hashing and counting what it reads. */
class HashingFileBody implements SequentialBody {
  readonly hash = createHash('sha256');
  bytes = 0;
  constructor(private readonly file: FileHandle, private readonly path: string, private readonly size: number, private readonly onProgress?: Progress) {}

  async read(buffer: Buffer): Promise<Buffer> {
    for (let filled = 0; filled < buffer.length; ) {
      const { bytesRead } = await this.file.read(buffer, filled, buffer.length - filled, this.bytes + filled);
      if (bytesRead === 0) throw fileChanged(this.path, `it ended at byte ${this.bytes + filled} of ${this.size}`);
      filled += bytesRead;
    }
    this.hash.update(buffer);
    this.bytes += buffer.length;
    this.onProgress?.(buffer.length);
    return buffer;
  }
}

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
  const file = await open(path, 'r');
  try {
    const before = await file.stat({ bigint: true });
    const size = Number(before.size);
    const body = new HashingFileBody(file, path, size, opts.onProgress);
    await store.put(key, body, size, { signal: opts.signal });
    const after = await stat(path, { bigint: true });
    if (body.bytes !== size) throw fileChanged(path, `read ${body.bytes} of ${size} bytes`);
    if (after.size !== before.size || after.mtimeNs !== before.mtimeNs || after.ino !== before.ino) {
      throw fileChanged(path, 'its size, modification time or inode moved');
    }
    return { size, sha256: body.hash.digest('hex') };
  } finally {
    await file.close();
  }
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
 * arrive. Big objects come as ranged parts in parallel. Bytes are written at their offsets as they
 * arrive (no part is held in memory) and hashed in order on a worker thread that follows the written
 * front; an answer cut short is resumed from the byte it reached.
 */
export async function downloadFile(store: ObjectStore, key: string, size: number, path: string, opts: DownloadOptions): Promise<string> {
  await mkdir(dirname(path), { recursive: true });
  const file = await open(path, 'w');
  const hash = new FollowingHash(path, opts.algorithm ?? 'sha256');
  try {
    const partCount = Math.max(1, Math.ceil(size / opts.partSize));
    // Bytes of each part on disk: parts fill front to back, so the hash can follow the first unfinished one.
    const written = new Array<number>(partCount).fill(0);
    const partLength = (index: number) => Math.min(size, (index + 1) * opts.partSize) - index * opts.partSize;
    let frontPart = 0;
    const moveFront = () => {
      const before = frontPart;
      while (frontPart < partCount && written[frontPart] === partLength(frontPart)) frontPart++;
      if (frontPart < partCount && (frontPart > before || written[frontPart] > 0)) hash.advance(frontPart * opts.partSize + written[frontPart]);
    };
    const fetchPart = async (index: number, signal: AbortSignal): Promise<void> => {
      const start = index * opts.partSize;
      const length = partLength(index);
      const what = `${key} bytes ${start}-${start + length - 1}`;
      // A retry asks only for the bytes not yet on disk.
      await withRetry(
        async () => {
          const from = start + written[index];
          let batch: Buffer[] = [];
          let batchBytes = 0;
          let writeFailed = false;
          const flush = async () => {
            if (batchBytes === 0) return;
            writeFailed = true;
            await file.writev(batch, start + written[index]);
            writeFailed = false;
            written[index] += batchBytes;
            opts.onProgress?.(batchBytes);
            if (index === frontPart) moveFront();
            batch = [];
            batchBytes = 0;
          };
          try {
            // A file of one part is asked whole, unless resuming.
            const range = partCount > 1 || from > 0 ? { start: from, end: start + length - 1 } : undefined;
            for await (const chunk of (await store.get(key, range, { signal })) as AsyncIterable<Buffer>) {
              batch.push(chunk);
              batchBytes += chunk.length;
              if (written[index] + batchBytes > length) throw sizeMismatch(what, length, written[index] + batchBytes);
              if (batchBytes >= WRITE_BATCH_BYTES) await flush();
            }
            await flush();
          } catch (err) {
            if (writeFailed) throw err;
            await flush(); // keep what arrived: the retry resumes after it
            throw cut(key, err);
          }
          if (written[index] !== length) throw sizeMismatch(what, length, written[index]);
        },
        { retryable: isCutShort, signal, baseDelayMs: 200 },
      );
    };
    // A failed part stops the others instead of letting them run on.
    const parts = Array.from({ length: partCount }, (_, index) => index);
    await forEachAbortable(parts, new Pool(opts.partsInFlight), opts.signal, fetchPart);
  } catch (err) {
    hash.cancel();
    throw err;
  } finally {
    await file.close();
  }
  return hash.digest(size);
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
export const isCutShort = (err: unknown) => err instanceof R2d1Error && err.retryable && / was cut: /.test(err.message);

/** An answer that ended cleanly with more or fewer bytes than asked: the object is not what the manifest says. */
const sizeMismatch = (what: string, expected: number, got: number) =>
  new R2d1Error('VERIFY', `${what}: expected ${expected} bytes, received ${got}`, {
    hint: 'the object is not the size its listing or manifest gives: it was replaced, or is corrupt',
  });

/** Hash of a local file (to check what is already on disk). */
export async function hashFile(path: string, algorithm: HashAlgorithm = 'sha256'): Promise<string> {
  const hash = createHash(algorithm);
  await pipeline(createReadStream(path, { highWaterMark: 1024 * 1024 }), hash);
  return hash.digest('hex');
}
