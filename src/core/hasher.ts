import { Worker } from 'node:worker_threads';
import { R2d1Error } from './errors.js';
import type { HashAlgorithm } from './transfer.js';

/*
 * Hashes files on a second thread while they are being written, so that verifying a download
 * overlaps the network instead of stalling the thread that parses it. The worker reads back what
 * was written (from the page cache) up to the contiguous frontier the writer reports.
 * Inline source: the bundles (ncc, the Dagger vendor copy) carry no separate worker file.
 */
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { openSync, readSync, closeSync } = require('node:fs');
const { createHash } = require('node:crypto');
const jobs = new Map();
const buffer = Buffer.allocUnsafe(4 * 1024 * 1024);
function hashUpTo(job, end) {
  while (job.offset < end) {
    const n = readSync(job.fd, buffer, 0, Math.min(buffer.length, end - job.offset), job.offset);
    if (n === 0) throw new Error('file ended at byte ' + job.offset + ', expected ' + end);
    job.hash.update(buffer.subarray(0, n));
    job.offset += n;
  }
}
// A job that fails (cannot open or read its file) keeps the error and reports it at 'finish'.
parentPort.on('message', (m) => {
  if (m.type === 'start') jobs.set(m.id, { path: m.path, hash: createHash(m.algorithm), offset: 0 });
  const job = jobs.get(m.id);
  if (!job) return;
  if (!job.error) {
    try {
      if (m.type === 'start') job.fd = openSync(job.path, 'r');
      else if (m.type === 'advance' || m.type === 'finish') hashUpTo(job, m.end);
    } catch (err) {
      job.error = String((err && err.message) || err);
    }
  }
  if (m.type === 'finish' || m.type === 'cancel') {
    jobs.delete(m.id);
    if (job.fd !== undefined) closeSync(job.fd);
    if (m.type === 'finish') parentPort.postMessage(job.error ? { id: m.id, error: job.error } : { id: m.id, digest: job.hash.digest('hex') });
  }
});
`;

type Reply = { id: number; digest?: string; error?: string };

let worker: Worker | undefined;
let nextId = 0;
const waiting = new Map<number, { resolve: (digest: string) => void; reject: (err: Error) => void; path: string }>();
/** Jobs whose result nobody awaits yet: the worker is unref'd only when there are none. */
let openJobs = 0;

function hashWorker(): Worker {
  if (worker) return worker;
  const w = new Worker(WORKER_SOURCE, { eval: true });
  w.on('message', (reply: Reply) => {
    const job = waiting.get(reply.id);
    if (!job) return;
    waiting.delete(reply.id);
    if (reply.digest !== undefined) job.resolve(reply.digest);
    else job.reject(new R2d1Error('VERIFY', `could not hash ${job.path}: ${reply.error}`, { hint: 'check the destination disk' }));
  });
  w.on('error', (err) => {
    if (worker === w) worker = undefined;
    for (const [id, job] of waiting) {
      waiting.delete(id);
      job.reject(err);
    }
  });
  w.unref();
  worker = w;
  return w;
}

/** A hash of one file that grows front to back, computed by the worker as the front advances. */
export class FollowingHash {
  private readonly id = nextId++;
  private readonly w = hashWorker();
  private ended = false;

  constructor(private readonly path: string, algorithm: HashAlgorithm) {
    if (openJobs++ === 0) this.w.ref();
    this.w.postMessage({ type: 'start', id: this.id, path, algorithm });
  }

  /** The first `end` bytes of the file are written and will not change. */
  advance(end: number): void {
    this.w.postMessage({ type: 'advance', id: this.id, end });
  }

  /** The whole file (`size` bytes) is written: its hex digest. */
  digest(size: number): Promise<string> {
    const result = new Promise<string>((resolve, reject) => waiting.set(this.id, { resolve, reject, path: this.path }));
    this.w.postMessage({ type: 'finish', id: this.id, end: size });
    return result.finally(() => this.end());
  }

  /** The download failed: forget the job and close its file. */
  cancel(): void {
    if (this.ended) return;
    this.w.postMessage({ type: 'cancel', id: this.id });
    this.end();
  }

  private end(): void {
    if (this.ended) return;
    this.ended = true;
    if (--openJobs === 0) worker?.unref();
  }
}
