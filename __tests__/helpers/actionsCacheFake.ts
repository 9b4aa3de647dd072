/**
 * A tiny in-memory GitHub Actions cache service (v2) faked at its HTTP boundary with nock, so that
 * @actions/cache's real code (twirp client, Azure Blob SDK, system tar) runs a real save → restore
 * round trip:
 *
 * - twirp JSON at `${RESULTS_ORIGIN}/twirp/github.actions.results.api.v1.CacheService/<Method>`:
 *   GetCacheEntryDownloadURL, CreateCacheEntry, FinalizeCacheEntryUpload (bearer ACTIONS_RUNTIME_TOKEN);
 * - the archive on "Azure Blob Storage" at `${BLOB_ORIGIN}/<container>/<blob>?<sas>`: a single-shot
 *   PUT (x-ms-blob-type: BlockBlob; @actions/cache uploads archives up to 128 MiB in one PUT),
 *   HEAD (getProperties) and ranged GET (x-ms-range, downloadToBuffer).
 *
 * The blob host ends in .blob.core.windows.net on purpose: only for such URLs does @actions/cache
 * download with the Azure SDK (HEAD + ranged GETs) as it does on GitHub; any other host gets one
 * plain GET. nock answers it; nothing resolves or connects to it.
 *
 * The caller owns nock's activation and net-connect policy (see __tests__/actionCache.test.ts).
 */
import { randomBytes } from 'node:crypto';
import nock from 'nock';

export const RESULTS_ORIGIN = 'http://results.test';
export const BLOB_ORIGIN = 'https://r2d1fakecache.blob.core.windows.net';
const SERVICE_PATH = '/twirp/github.actions.results.api.v1.CacheService/';
const CONTAINER = 'actions-cache';

export type TwirpMethod = 'GetCacheEntryDownloadURL' | 'CreateCacheEntry' | 'FinalizeCacheEntryUpload';

export interface FakeEntry {
  id: number;
  key: string;
  version: string;
  blob: string;
  /** The uploaded archive, once PUT. */
  data?: Buffer;
  finalized: boolean;
  createdAt: number;
}

export interface TwirpCall {
  method: TwirpMethod;
  body: Record<string, unknown>;
  status: number;
}

export interface BlobCall {
  method: string;
  path: string;
  range?: string;
  bytes?: number;
  status: number;
}

type Reply = [number, string | Buffer, Record<string, string>?];

export class ActionsCacheFake {
  readonly token = `fake-runtime-token-${randomBytes(4).toString('hex')}`;
  readonly entries: FakeEntry[] = [];
  readonly twirpCalls: TwirpCall[] = [];
  readonly blobCalls: BlobCall[] = [];
  private readonly failures = new Map<TwirpMethod, number>();
  private interceptors: nock.Interceptor[] = [];
  private nextId = 1;

  /** What @actions/cache needs to pick cache service v2 and find this fake. */
  env(): Record<string, string> {
    return {
      ACTIONS_CACHE_SERVICE_V2: 'true',
      ACTIONS_RESULTS_URL: `${RESULTS_ORIGIN}/`,
      ACTIONS_RUNTIME_TOKEN: this.token,
      GITHUB_SERVER_URL: 'https://github.com', // not GHES: GHES forces service v1
    };
  }

  /** Installs the (persistent) interceptors. */
  start(): void {
    if (this.interceptors.length) return;
    const self = this;
    const twirp = nock(RESULTS_ORIGIN)
      .persist()
      .post((path) => path.startsWith(SERVICE_PATH));
    twirp.reply(function (uri, body) {
      return self.twirp(uri.slice(SERVICE_PATH.length) as TwirpMethod, body, this.req.headers);
    });
    const blob = (method: 'PUT' | 'HEAD' | 'GET') =>
      nock(BLOB_ORIGIN)
        .persist()
        .intercept((path) => path.startsWith(`/${CONTAINER}/`), method);
    const put = blob('PUT');
    put.reply(function (uri, body) {
      return self.put(uri, body, this.req.headers);
    });
    const head = blob('HEAD');
    head.reply(function (uri) {
      return self.read('HEAD', uri, this.req.headers);
    });
    const get = blob('GET');
    get.reply(function (uri) {
      return self.read('GET', uri, this.req.headers);
    });
    this.interceptors = [twirp, put, head, get];
  }

  /** Removes this fake's interceptors (leaves other nock state alone). */
  stop(): void {
    for (const interceptor of this.interceptors) nock.removeInterceptor(interceptor);
    this.interceptors = [];
  }

  /** Forgets entries, calls and failures. */
  reset(): void {
    this.entries.length = 0;
    this.twirpCalls.length = 0;
    this.blobCalls.length = 0;
    this.failures.clear();
  }

  /** Every call of `method` answers `status` (a twirp "internal" error) until heal(). */
  fail(method: TwirpMethod, status = 500): void {
    this.failures.set(method, status);
  }

  heal(): void {
    this.failures.clear();
  }

  calls(method: TwirpMethod): TwirpCall[] {
    return this.twirpCalls.filter((c) => c.method === method);
  }

  /** Finalized entries (what a restore can find). */
  saved(): FakeEntry[] {
    return this.entries.filter((e) => e.finalized);
  }

  /** Blob GETs that moved archive bytes (not HEADs). */
  downloads(): BlobCall[] {
    return this.blobCalls.filter((c) => c.method === 'GET' && c.status < 300);
  }

  // ------------------------------------------------------------------ twirp

  private twirp(method: TwirpMethod, rawBody: unknown, headers: Record<string, string | string[] | undefined>): Reply {
    const body = (typeof rawBody === 'string' ? JSON.parse(rawBody || '{}') : rawBody ?? {}) as Record<string, unknown>;
    const reply = (status: number, json: unknown): Reply => {
      this.twirpCalls.push({ method, body, status });
      return [status, JSON.stringify(json), { 'content-type': 'application/json' }];
    };
    if (headers.authorization !== `Bearer ${this.token}`) return reply(401, { code: 'unauthenticated', msg: 'bad or missing token' });
    const failure = this.failures.get(method);
    if (failure) return reply(failure, { code: 'internal', msg: `injected failure of ${method}` });
    const key = String(body.key ?? '');
    const version = String(body.version ?? '');
    if (!key || !version) return reply(400, { code: 'invalid_argument', msg: 'key and version are required' });

    switch (method) {
      case 'GetCacheEntryDownloadURL': {
        // The primary key matches exactly; restore keys by prefix, newest first (as the service does).
        const usable = this.entries.filter((e) => e.finalized && e.version === version);
        let entry = usable.find((e) => e.key === key);
        for (const prefix of (body.restore_keys as string[] | undefined) ?? []) {
          entry ??= usable.filter((e) => e.key.startsWith(prefix)).sort((a, b) => b.createdAt - a.createdAt)[0];
        }
        if (!entry) return reply(200, { ok: false, signed_download_url: '', matched_key: '' });
        return reply(200, { ok: true, signed_download_url: this.blobUrl(entry, 'r'), matched_key: entry.key });
      }
      case 'CreateCacheEntry': {
        if (this.entries.some((e) => e.key === key && e.version === version)) {
          return reply(409, { code: 'already_exists', msg: 'cache entry with the same key, version, and scope already exists' });
        }
        const entry: FakeEntry = { id: this.nextId++, key, version, blob: randomBytes(8).toString('hex'), finalized: false, createdAt: Date.now() };
        this.entries.push(entry);
        return reply(200, { ok: true, signed_upload_url: this.blobUrl(entry, 'cw') });
      }
      case 'FinalizeCacheEntryUpload': {
        const entry = this.entries.find((e) => e.key === key && e.version === version && !e.finalized);
        if (!entry?.data) return reply(200, { ok: false, entry_id: '0', message: `no upload for ${key}` });
        if (String(entry.data.length) !== String(body.size_bytes)) {
          return reply(200, { ok: false, entry_id: '0', message: `size mismatch: uploaded ${entry.data.length}, finalized ${String(body.size_bytes)}` });
        }
        entry.finalized = true;
        return reply(200, { ok: true, entry_id: String(entry.id) });
      }
      default:
        return reply(404, { code: 'bad_route', msg: `no method ${String(method)}` });
    }
  }

  private blobUrl(entry: FakeEntry, permissions: string): string {
    return `${BLOB_ORIGIN}/${CONTAINER}/${entry.blob}?sv=2024-11-04&sr=b&sp=${permissions}&sig=fake${randomBytes(6).toString('hex')}`;
  }

  // ------------------------------------------------------------------ blob storage

  private entryOf(uri: string): FakeEntry | undefined {
    const url = new URL(uri, BLOB_ORIGIN);
    const blob = url.pathname.slice(`/${CONTAINER}/`.length);
    return url.searchParams.get('sig') ? this.entries.find((e) => e.blob === blob) : undefined;
  }

  private put(uri: string, body: unknown, headers: Record<string, string | string[] | undefined>): Reply {
    const url = new URL(uri, BLOB_ORIGIN);
    const record = (status: number, bytes?: number) => this.blobCalls.push({ method: 'PUT', path: url.pathname, status, bytes });
    const entry = this.entryOf(uri);
    if (!entry || entry.finalized) {
      record(404);
      return [404, '', { 'x-ms-error-code': 'BlobNotFound' }];
    }
    if (url.searchParams.get('comp')) {
      // Staged blocks (archives over 128 MiB) are not implemented by this fake.
      record(501);
      return [501, '', { 'x-ms-error-code': 'NotImplemented' }];
    }
    if (headers['x-ms-blob-type'] !== 'BlockBlob') {
      record(400);
      return [400, '', { 'x-ms-error-code': 'InvalidHeaderValue' }];
    }
    const data = requestBytes(body, Number(headers['content-length']));
    entry.data = data;
    record(201, data.length);
    return [201, '', { etag: `"0x${entry.blob.toUpperCase()}"`, 'last-modified': new Date().toUTCString(), 'x-ms-request-server-encrypted': 'true' }];
  }

  private read(method: 'GET' | 'HEAD', uri: string, headers: Record<string, string | string[] | undefined>): Reply {
    const url = new URL(uri, BLOB_ORIGIN);
    const rangeHeader = (headers['x-ms-range'] ?? headers.range) as string | undefined;
    const record = (status: number, bytes?: number) => this.blobCalls.push({ method, path: url.pathname, range: rangeHeader, status, bytes });
    const entry = this.entryOf(uri);
    if (!entry?.finalized || !entry.data) {
      record(404);
      return [404, '', { 'x-ms-error-code': 'BlobNotFound' }];
    }
    const data = entry.data;
    const common = {
      etag: `"0x${entry.blob.toUpperCase()}"`,
      'last-modified': new Date(entry.createdAt).toUTCString(),
      'x-ms-blob-type': 'BlockBlob',
      'accept-ranges': 'bytes',
      'content-type': 'application/octet-stream',
    };
    if (method === 'HEAD') {
      record(200);
      return [200, '', { ...common, 'content-length': String(data.length) }];
    }
    const range = rangeHeader ? /^bytes=(\d+)-(\d*)$/.exec(rangeHeader) : null;
    if (rangeHeader && !range) {
      record(416);
      return [416, '', { 'x-ms-error-code': 'InvalidRange' }];
    }
    if (!range) {
      record(200, data.length);
      return [200, data, { ...common, 'content-length': String(data.length) }];
    }
    const start = Number(range[1]);
    const end = Math.min(range[2] ? Number(range[2]) : data.length - 1, data.length - 1);
    if (start >= data.length || end < start) {
      record(416);
      return [416, '', { 'x-ms-error-code': 'InvalidRange', 'content-range': `bytes */${data.length}` }];
    }
    const slice = data.subarray(start, end + 1);
    record(206, slice.length);
    return [206, slice, { ...common, 'content-length': String(slice.length), 'content-range': `bytes ${start}-${end}/${data.length}` }];
  }
}

/**
 * The bytes of an intercepted request body. nock hands bodies over as text: UTF-8 when the bytes
 * survive a UTF-8 round trip, hex otherwise; Content-Length tells which.
 */
function requestBytes(body: unknown, contentLength: number): Buffer {
  if (Buffer.isBuffer(body)) return body;
  const text = typeof body === 'string' ? body : JSON.stringify(body ?? '');
  const utf8 = Buffer.from(text, 'utf8');
  if (!Number.isFinite(contentLength) || utf8.length === contentLength) return utf8;
  if (/^[0-9a-f]*$/i.test(text) && text.length === contentLength * 2) return Buffer.from(text, 'hex');
  throw new Error(`cannot recover the ${contentLength}-byte request body nock passed (${text.length} characters)`);
}
