/**
 * The fault proxy itself (__tests__/helpers/faultProxy.ts): requests pass through it with their SigV4
 * signatures intact, each fault does what it says, and refuseFor really refuses connections.
 */
import { afterAll, afterEach, describe, expect, it } from '@jest/globals';
import { request } from 'node:http';
import { S3Store, loadConfig } from '../src/index.js';
import { closeS3, randomFile, sha256 } from './helpers/checkpoints.js';
import { FaultProxy, classify, on } from './helpers/faultProxy.js';
import { rig, rigEnv, uniqueJobId } from './rig/rig.js';
import { bufferBody, readAll } from '../src/core/store.js';

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});
afterAll(() => closeS3());

async function proxy(): Promise<FaultProxy> {
  const p = await FaultProxy.start(rig().url);
  cleanups.push(() => p.close());
  return p;
}

function storeVia(p: FaultProxy, tuning: ConstructorParameters<typeof S3Store>[1] = {}): S3Store {
  const config = loadConfig(rigEnv({ R2D1_R2_ENDPOINT_URL: p.s3Endpoint }));
  if (config.store.kind !== 'r2') throw new Error('expected R2');
  const store = new S3Store(config.store, { partSize: 5 * 1024 * 1024, ...tuning });
  cleanups.push(() => store.close());
  return store;
}

describe('fault proxy', () => {
  it('forwards S3 requests with the Host header unchanged: miniflare verifies the signatures (put, multipart, get, list, delete)', async () => {
    const p = await proxy();
    const store = storeVia(p);
    const prefix = `proxy/${uniqueJobId('pass')}/`;
    const small = randomFile(1000);
    const big = randomFile(11 * 1024 * 1024);
    await store.put(`${prefix}small`, small, small.length);
    await store.put(`${prefix}big`, bufferBody(big), big.length);
    expect(sha256(await readAll(await store.get(`${prefix}big`)))).toBe(sha256(big));
    expect((await store.list(prefix)).objects.map((o) => o.key)).toEqual([`${prefix}big`, `${prefix}small`]);
    await store.delete([`${prefix}big`, `${prefix}small`]);
    expect(p.counts()).toMatchObject({ PutObject: 1, CreateMultipartUpload: 1, UploadPart: 3, CompleteMultipartUpload: 1, GetObject: 1, ListObjectsV2: 1, DeleteObjects: 1 });
    expect(p.requests.every((r) => r.upstreamStatus !== undefined && r.upstreamStatus < 300)).toBe(true);
    expect(p.openMultipartUploads()).toEqual([]);
  });

  it('classifies S3 operations and D1 queries', () => {
    const base = '/cdn-cgi/local/r2/s3/bucket';
    expect(classify('GET', `${base}?list-type=2&prefix=jobs%2F`)).toMatchObject({ op: 'ListObjectsV2' });
    expect(classify('PUT', `${base}/jobs/j/ck/v/a%20b.bin?partNumber=2&uploadId=u1`)).toEqual({ op: 'UploadPart', key: 'jobs/j/ck/v/a b.bin', partNumber: 2, uploadId: 'u1' });
    expect(classify('POST', `${base}/k?uploads`)).toMatchObject({ op: 'CreateMultipartUpload', key: 'k' });
    expect(classify('POST', `${base}/k?uploadId=u1`)).toMatchObject({ op: 'CompleteMultipartUpload', uploadId: 'u1' });
    expect(classify('DELETE', `${base}/k?uploadId=u1`)).toMatchObject({ op: 'AbortMultipartUpload' });
    expect(classify('POST', `${base}?delete`)).toMatchObject({ op: 'DeleteObjects' });
    expect(classify('POST', '/client/v4/accounts/a/d1/database/d/query')).toMatchObject({ op: 'D1Query' });
  });

  it('answers a status fault with an S3 error the SDK reads (SlowDown, HTTP 503), then forwards again', async () => {
    const p = await proxy();
    p.plan([{ match: on('GetObject'), fault: 'status', status: 503, code: 'SlowDown', times: 2 }]);
    const store = storeVia(p, { maxAttempts: 1 });
    const key = `proxy/${uniqueJobId('status')}`;
    await store.put(key, Buffer.from('abc'), 3);
    const err = (await store.get(key).catch((e: unknown) => e)) as { message: string };
    expect(err.message).toMatch(/SlowDown \(HTTP 503\)/);
    await store.get(key).catch(() => undefined);
    expect((await readAll(await store.get(key))).toString()).toBe('abc');
    expect(p.applied()).toEqual([2]);
  });

  it('resets a request in the middle of its body, cuts a response short, stalls, and refuses connections for a while', async () => {
    const p = await proxy();
    const send = (method: string, path: string, body?: Buffer) =>
      new Promise<{ status?: number; bytes: number; error?: string }>((resolve) => {
        const req = request(`${p.url}${path.replace(/^\//, '')}`, { method, headers: body ? { 'content-length': body.length } : {} }, (res) => {
          let bytes = 0;
          res.on('data', (c: Buffer) => (bytes += c.length));
          res.on('end', () => resolve({ status: res.statusCode, bytes }));
          res.on('error', (e: NodeJS.ErrnoException) => resolve({ status: res.statusCode, bytes, error: e.code ?? e.message }));
        });
        req.on('error', (e: NodeJS.ErrnoException) => resolve({ bytes: 0, error: e.code ?? e.message }));
        req.end(body);
      });
    const path = `cdn-cgi/local/r2/s3/${rig().bucket}/proxy-${uniqueJobId('raw')}?partNumber=1&uploadId=x`;
    p.plan([{ fault: 'reset-mid-body', times: 1 }]);
    expect((await send('PUT', path, Buffer.alloc(4 * 1024 * 1024))).error).toMatch(/ECONNRESET|EPIPE/);
    expect(p.requests.at(-1)).toMatchObject({ op: 'UploadPart', fault: 'reset-mid-body', outcome: 'reset' });

    // Truncation: the head promises the whole body, half of it comes, then the connection dies.
    p.plan([{ fault: 'truncate', times: 1 }]);
    const cut = await send('GET', `cdn-cgi/local/r2/s3/${rig().bucket}?list-type=2`);
    expect(cut.error).toMatch(/ECONNRESET|aborted/);
    expect(p.requests.at(-1)).toMatchObject({ op: 'ListObjectsV2', fault: 'truncate', upstreamStatus: expect.any(Number) });

    // A stall the client gives up on is recorded as such.
    p.plan([{ fault: 'stall', ms: 5000, times: 1 }]);
    const stalled = new Promise<string>((resolve) => {
      const req = request(`${p.url}cdn-cgi/local/r2/s3/${rig().bucket}?list-type=2`, { timeout: 300 }, () => resolve('answered'));
      req.on('timeout', () => {
        req.destroy();
        resolve('gave up');
      });
      req.on('error', () => undefined);
      req.end();
    });
    expect(await stalled).toBe('gave up');
    await new Promise((r) => setTimeout(r, 100));
    expect(p.requests.at(-1)).toMatchObject({ fault: 'stall', clientGaveUp: true });

    // Refusing: connections fail with ECONNREFUSED until the time is up, then the same port answers.
    p.clear();
    await p.refuseFor(400);
    expect((await send('GET', `cdn-cgi/local/r2/s3/${rig().bucket}?list-type=2`)).error).toBe('ECONNREFUSED');
    await new Promise((r) => setTimeout(r, 500));
    expect((await send('GET', `cdn-cgi/local/r2/s3/${rig().bucket}?list-type=2`)).status).toBeGreaterThanOrEqual(400); // unsigned, refused by miniflare, but answered
  });
});
