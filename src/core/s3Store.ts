import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
  type ListObjectsV2CommandOutput,
} from '@aws-sdk/client-s3';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import type { R2Settings } from './config.js';
import { R2d1Error, isRetryable } from './errors.js';
import { bufferBody, type Listing, type ObjectStore, type SequentialBody } from './store.js';

export interface S3Tuning {
  /** Bytes per multipart part; every part but the last has exactly this size, as R2 requires. */
  partSize: number;
  /** Parts of one object in flight at once: memory per object is partsInFlight × partSize. */
  partsInFlight: number;
  /** Open connections kept for reuse. */
  maxSockets: number;
  /** Attempts per request inside the SDK (429, 5xx and network errors). */
  maxAttempts: number;
  /** A request whose connection stays silent this long is abandoned (and retried). */
  socketTimeoutMs: number;
}

/**
 * Chosen from bench/ measurements (BENCHMARKS.md): 16 MiB parts ship as fast as 8 MiB ones with
 * half the requests (R2 bills each part), and 64 sockets serve 32 files plus the parts of two big ones.
 */
export const DEFAULT_S3_TUNING: S3Tuning = { partSize: 16 * 1024 * 1024, partsInFlight: 4, maxSockets: 64, maxAttempts: 5, socketTimeoutMs: 120_000 };
const MAX_PARTS = 10_000;
/** Enough for two big files' parts in flight (the courier's default), not more. */
const MAX_SPARE_PARTS = 8;
const UNSIGNED_PAYLOAD_COMMANDS = new Set(['PutObjectCommand', 'UploadPartCommand']);
const MIB = 1024 * 1024;

/** Cloudflare R2, or any S3-compatible server, through the AWS SDK. */
export class S3Store implements ObjectStore {
  readonly description: string;
  readonly client: S3Client;
  private readonly bucket: string;
  private readonly tuning: S3Tuning;
  /** Part buffers of finished uploads, reused by the next ones instead of allocating (and collecting) new ones. */
  private readonly spareParts: Buffer[] = [];
  /** Multipart uploads whose abort failed (R2 unreachable then): aborted again after the next success. */
  private readonly pendingAborts = new Map<string, { Key: string; UploadId: string }>();

  constructor(settings: R2Settings, tuning: Partial<S3Tuning> = {}) {
    this.bucket = settings.bucket;
    this.tuning = { ...DEFAULT_S3_TUNING, ...tuning };
    this.description = `r2://${settings.bucket} (${settings.endpoint})`;
    const agentOptions = { keepAlive: true, maxSockets: this.tuning.maxSockets };
    this.client = new S3Client({
      region: 'auto',
      endpoint: settings.endpoint,
      forcePathStyle: true,
      credentials: {
        accessKeyId: settings.accessKeyId,
        secretAccessKey: settings.secretAccessKey,
        sessionToken: settings.sessionToken,
      },
      maxAttempts: this.tuning.maxAttempts,
      // R2 rejects the SDK's default trailing checksums on some operations; ask only where required.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      // One round trip fewer per part, and miniflare's S3 endpoint stalls on it.
      expectContinueHeader: false,
      requestHandler: new NodeHttpHandler({
        httpAgent: new HttpAgent(agentOptions),
        httpsAgent: new HttpsAgent(agentOptions),
        connectionTimeout: 10_000,
        socketTimeout: this.tuning.socketTimeoutMs,
      }),
    });
    if (new URL(settings.endpoint).protocol === 'https:') {
      // TLS protects the bytes in transit and every pull checks each file's SHA-256 from the
      // manifest: signing each part's payload too would hash every byte a second time.
      this.client.middlewareStack.add(
        (next, context) => (args) => {
          const request = args.request as { headers?: Record<string, string> };
          if (UNSIGNED_PAYLOAD_COMMANDS.has(context.commandName ?? '') && request.headers) request.headers['x-amz-content-sha256'] = 'UNSIGNED-PAYLOAD';
          return next(args);
        },
        { step: 'build', name: 'r2d1UnsignedPayload' },
      );
    }
  }

  /**
   * One PutObject up to the part size; above it a multipart upload in the manner of lib-storage's
   * Upload (a fixed pool of `partsInFlight` workers pulling parts, abort on failure), except that
   * each worker reads its parts straight into one buffer it reuses: no copying of read chunks into
   * parts, and no garbage to collect, which measured as a fifth of the CPU time of a ship.
   */
  async put(key: string, body: SequentialBody | Buffer, size: number, opts: { signal?: AbortSignal } = {}): Promise<void> {
    // Keep under R2's 10,000-part limit for very large files, in whole MiB.
    const partSize = Math.max(this.tuning.partSize, Math.ceil(size / MAX_PARTS / MIB) * MIB);
    try {
      if (size <= partSize) {
        const data = Buffer.isBuffer(body) ? body : await body.read(Buffer.allocUnsafe(size));
        await this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: data, ContentLength: size }), { abortSignal: opts.signal });
      } else {
        await this.putMultipart(key, Buffer.isBuffer(body) ? bufferBody(body) : body, size, partSize, opts.signal);
      }
    } catch (err) {
      throw this.wrap(err, `upload of ${key}`);
    }
    if (this.pendingAborts.size > 0) void this.retryAborts();
  }

  private async putMultipart(key: string, body: SequentialBody, size: number, partSize: number, signal?: AbortSignal): Promise<void> {
    const target = { Bucket: this.bucket, Key: key };
    const { UploadId } = await this.client.send(new CreateMultipartUploadCommand(target), { abortSignal: signal });
    const stop = new AbortController();
    const linked = signal ? AbortSignal.any([signal, stop.signal]) : stop.signal;
    const partCount = Math.ceil(size / partSize);
    const completed: { PartNumber: number; ETag?: string }[] = [];
    // Reads are chained so that parts are read, hashed and numbered in file order.
    let nextPart = 1;
    let reading: Promise<unknown> = Promise.resolve();
    const readPart = (buffer: Buffer) => {
      const part = reading.then(async () => {
        if (nextPart > partCount) return undefined;
        const number = nextPart++;
        const length = Math.min(partSize, size - (number - 1) * partSize);
        return { number, data: await body.read(buffer.subarray(0, length)) };
      });
      reading = part.catch(() => undefined);
      return part;
    };
    const worker = async () => {
      const pooled = partSize === this.tuning.partSize;
      const buffer = (pooled && this.spareParts.pop()) || Buffer.allocUnsafe(partSize);
      for (let part = await readPart(buffer); part && !linked.aborted; part = await readPart(buffer)) {
        const out = await this.client.send(
          new UploadPartCommand({ ...target, UploadId, PartNumber: part.number, Body: part.data, ContentLength: part.data.length }),
          { abortSignal: linked },
        );
        completed.push({ PartNumber: part.number, ETag: out.ETag });
      }
      linked.throwIfAborted();
      // Reused only after requests that finished: an aborted one may still be writing from it.
      if (pooled && this.spareParts.length < MAX_SPARE_PARTS) this.spareParts.push(buffer);
    };
    try {
      const workers = Array.from({ length: Math.min(this.tuning.partsInFlight, partCount) }, () =>
        worker().catch((err) => {
          stop.abort(err);
          throw err;
        }),
      );
      const failure = (await Promise.allSettled(workers)).find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failure) throw signal?.aborted ? signal.reason : stop.signal.reason;
      completed.sort((a, b) => a.PartNumber - b.PartNumber);
      await this.client.send(new CompleteMultipartUploadCommand({ ...target, UploadId, MultipartUpload: { Parts: completed } }), { abortSignal: signal });
    } catch (err) {
      await this.client.send(new AbortMultipartUploadCommand({ ...target, UploadId })).catch((abortErr) => {
        if ((abortErr as { name?: string }).name !== 'NoSuchUpload') this.pendingAborts.set(UploadId!, { Key: key, UploadId: UploadId! });
      });
      throw err;
    }
  }

  private async retryAborts(): Promise<void> {
    for (const [id, target] of [...this.pendingAborts]) {
      try {
        await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, ...target }));
        this.pendingAborts.delete(id);
      } catch (err) {
        if ((err as { name?: string }).name === 'NoSuchUpload') this.pendingAborts.delete(id);
      }
    }
  }

  async get(key: string, range?: { start: number; end: number }, opts: { signal?: AbortSignal } = {}): Promise<Readable> {
    try {
      const out = await this.client.send(
        new GetObjectCommand({ Bucket: this.bucket, Key: key, Range: range ? `bytes=${range.start}-${range.end}` : undefined }),
        { abortSignal: opts.signal },
      );
      return out.Body as Readable;
    } catch (err) {
      throw this.wrap(err, `download of ${key}`);
    }
  }

  async list(prefix: string, opts: { delimiter?: string } = {}): Promise<Listing> {
    const listing: Listing = { objects: [], prefixes: [] };
    let token: string | undefined;
    do {
      let page: ListObjectsV2CommandOutput;
      try {
        page = await this.client.send(
          new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, Delimiter: opts.delimiter, ContinuationToken: token }),
        );
      } catch (err) {
        throw this.wrap(err, `listing of ${prefix || '(bucket root)'}`);
      }
      for (const o of page.Contents ?? []) {
        if (o.Key !== undefined) listing.objects.push({ key: o.Key, size: o.Size ?? 0, etag: o.ETag, lastModified: o.LastModified });
      }
      for (const p of page.CommonPrefixes ?? []) if (p.Prefix) listing.prefixes.push(p.Prefix);
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return listing;
  }

  async delete(keys: readonly string[]): Promise<void> {
    for (let i = 0; i < keys.length; i += 1000) {
      const batch = keys.slice(i, i + 1000);
      try {
        const out = await this.client.send(
          new DeleteObjectsCommand({ Bucket: this.bucket, Delete: { Objects: batch.map((Key) => ({ Key })), Quiet: true } }),
        );
        if (out.Errors?.length) throw new Error(out.Errors.map((e) => `${e.Key}: ${e.Code} ${e.Message}`).join('; '));
      } catch (err) {
        throw this.wrap(err, `deletion of ${batch.length} object(s)`);
      }
    }
  }

  close(): void {
    this.client.destroy();
  }

  /** SDK errors become R2d1Errors that name the operation and say what to check. */
  private wrap(err: unknown, operation: string): unknown {
    if (err instanceof R2d1Error) return err;
    const e = err as { name?: string; message?: string; $metadata?: { httpStatusCode?: number }; code?: string };
    const status = e.$metadata?.httpStatusCode;
    if (e.name === 'AbortError') return err;
    if (e.name === 'NoSuchUpload') {
      return new R2d1Error('STORE', `${operation} at ${this.description}: the multipart upload ended under us (NoSuchUpload)`, {
        hint: 'a lost answer to CompleteMultipartUpload, or an abort; the version is uploaded again',
        retryable: true,
        cause: err,
      });
    }
    if (e.name === 'NoSuchKey' || (status === 404 && e.name !== 'NoSuchBucket')) {
      return new R2d1Error('NOT_FOUND', `${operation}: ${this.description} has no such object`, { cause: err });
    }
    let hint = 'check R2D1_R2_ENDPOINT_URL and your network';
    if (e.name === 'NoSuchBucket') hint = 'check R2D1_R2_BUCKET: the bucket does not exist at this endpoint';
    else if (status === 401 || status === 403 || /Signature|AccessDenied|InvalidAccessKeyId|ExpiredToken|Credential/i.test(e.name ?? '')) {
      hint = 'check R2D1_R2_ACCESS_KEY, R2D1_R2_SECRET_KEY and R2D1_SESSION_TOKEN (expired temporary credentials?)';
    }
    const detail = e.code && !e.message?.includes(e.code) ? `${e.code} ${e.message ?? ''}` : (e.message ?? String(err));
    return new R2d1Error('STORE', `${operation} at ${this.description} failed: ${e.name ?? 'Error'}${status ? ` (HTTP ${status})` : ''}: ${detail}`, {
      hint,
      retryable: isRetryable(err),
      cause: err,
    });
  }
}
