/**
 * A fault-injecting HTTP proxy for the rig: sits on 127.0.0.1 in front of miniflare (R2's S3 endpoint
 * and the D1 REST stand-in) and, following a programmable plan, answers some requests with faults
 * instead of forwarding them:
 *
 *   status          an HTTP error with an S3 XML body (<Code>SlowDown</Code>…) or a D1 JSON envelope
 *   reset           the TCP connection is reset (RST) as soon as the request head arrives
 *   reset-mid-body  the connection is reset after `afterBytes` bytes of the request body (default: half)
 *   stall           nothing is answered for `ms` (the body is read); then the request is forwarded, or
 *                   the connection reset (`then: 'reset'`); a client that gives up first is recorded
 *   truncate        forwarded; the response head (with its full Content-Length) and half the body are
 *                   sent, then the connection is reset. An empty response is not sent at all (the
 *                   request took effect upstream, the answer was lost)
 *   delay           forwarded after `ms` (slow, but within timeouts)
 *
 * and `refuseFor(ms)` closes the listener (and every open connection) and reopens it on the same port,
 * so connections are refused meanwhile.
 *
 * SigV4: the SDK signs the Host it connects to (the proxy's 127.0.0.1:port). The proxy forwards the
 * Host header unchanged and miniflare checks the signature against the Host header it receives, so
 * signatures verify through the proxy (checked by faults.proxy.test.ts).
 *
 * Every request is recorded (`requests`): its S3 operation (or D1Query), key, part number, upload id,
 * the fault applied, the status the client got and the one upstream gave. Multipart uploads are tracked
 * from those records (`openMultipartUploads()`), because miniflare does not implement ListMultipartUploads.
 */
import { Agent, createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { spawn, type ChildProcess } from 'node:child_process';
import { afterAll, afterEach } from '@jest/globals';
import { appendFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import type { Socket } from 'node:net';
import { join, resolve as resolvePath } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { closeS3 } from './checkpoints.js';
import { killAllStarted } from './cli.js';
import { makeTempDir, rig } from '../rig/rig.js';

const REPO = resolvePath(fileURLToPath(new URL('.', import.meta.url)), '..', '..');

export type S3Operation =
  | 'ListObjectsV2'
  | 'GetObject'
  | 'HeadObject'
  | 'PutObject'
  | 'CreateMultipartUpload'
  | 'UploadPart'
  | 'CompleteMultipartUpload'
  | 'AbortMultipartUpload'
  | 'DeleteObjects'
  | 'DeleteObject'
  | 'D1Query'
  | 'Other';

export interface SeenRequest {
  id: number;
  method: string;
  url: string;
  op: S3Operation;
  /** Object key (decoded), for S3 object operations. */
  key?: string;
  partNumber?: number;
  uploadId?: string;
  /** Declared body size (Content-Length), when sent. */
  contentLength?: number;
  /** The Range header of a ranged GET. */
  range?: string;
  hasSessionToken: boolean;
  startedAt: number;
  endedAt?: number;
  /** The fault applied (undefined: forwarded untouched). */
  fault?: FaultKind;
  /** What the client received: an HTTP status, or 'reset' / 'none'. */
  outcome?: number | 'reset' | 'none';
  /** Status miniflare answered, when the request was forwarded. */
  upstreamStatus?: number;
  /** The client closed the connection before the proxy answered (gave up on a stall). */
  clientGaveUp?: boolean;
  /** UploadId in a CreateMultipartUpload response. */
  createdUploadId?: string;
}

export type FaultKind = 'status' | 'reset' | 'reset-mid-body' | 'stall' | 'truncate' | 'delay';

export interface FaultRule {
  /** Which requests (default: every one). */
  match?: (req: SeenRequest) => boolean;
  fault: FaultKind;
  /** 'status': the HTTP status (default 503) and S3 error code (default from the status). */
  status?: number;
  code?: string;
  message?: string;
  /** 'reset-mid-body': body bytes received before the reset (default half the Content-Length). */
  afterBytes?: number;
  /** 'stall' and 'delay': milliseconds. */
  ms?: number;
  /** 'stall': what happens once `ms` has passed (default 'forward'). */
  then?: 'forward' | 'reset';
  /** Matching requests let through untouched before the fault starts (default 0). */
  skip?: number;
  /** How many matching requests get the fault (default: unlimited). */
  times?: number;
}

interface ActiveRule extends FaultRule {
  skipped: number;
  applied: number;
}

const DEFAULT_CODES: Record<number, string> = {
  400: 'InvalidRequest',
  403: 'AccessDenied',
  429: 'TooManyRequests',
  500: 'InternalError',
  502: 'BadGateway',
  503: 'ServiceUnavailable',
};

/** Classifies a request to the rig by method, path and query. */
export function classify(method: string, url: string): Pick<SeenRequest, 'op' | 'key' | 'partNumber' | 'uploadId'> {
  const parsed = new URL(url, 'http://proxy');
  const path = parsed.pathname;
  const q = parsed.searchParams;
  if (path.startsWith('/client/v4/')) return { op: 'D1Query' };
  const s3 = /^\/cdn-cgi\/local\/r2\/s3\/([^/]+)(?:\/(.*))?$/.exec(path);
  if (!s3) return { op: 'Other' };
  const key = s3[2] !== undefined && s3[2] !== '' ? decodeURIComponent(s3[2]) : undefined;
  const uploadId = q.get('uploadId') ?? undefined;
  const partNumber = q.has('partNumber') ? Number(q.get('partNumber')) : undefined;
  let op: S3Operation = 'Other';
  if (key === undefined) {
    if (method === 'GET') op = 'ListObjectsV2';
    else if (method === 'POST' && q.has('delete')) op = 'DeleteObjects';
  } else if (method === 'GET') op = 'GetObject';
  else if (method === 'HEAD') op = 'HeadObject';
  else if (method === 'PUT') op = uploadId && partNumber !== undefined ? 'UploadPart' : 'PutObject';
  else if (method === 'POST' && q.has('uploads')) op = 'CreateMultipartUpload';
  else if (method === 'POST' && uploadId) op = 'CompleteMultipartUpload';
  else if (method === 'DELETE') op = uploadId ? 'AbortMultipartUpload' : 'DeleteObject';
  return { op, key, partNumber, uploadId };
}

/** `{ match: on('UploadPart', ...) }`: matches requests of these operations. */
export const on =
  (...ops: S3Operation[]) =>
  (req: SeenRequest): boolean =>
    ops.includes(req.op);

/** Every S3 operation that moves checkpoint data or commits it (uploads, not reads). */
export const isWrite = on('PutObject', 'CreateMultipartUpload', 'UploadPart', 'CompleteMultipartUpload');

export class FaultProxy {
  readonly requests: SeenRequest[] = [];
  private rules: ActiveRule[] = [];
  private server?: Server;
  private readonly sockets = new Set<Socket>();
  private readonly agent = new Agent({ keepAlive: true, maxSockets: 64 });
  private readonly upstream: URL;
  private refusing?: NodeJS.Timeout;
  private nextId = 1;
  private listeners: ((req: SeenRequest) => void)[] = [];
  port = 0;

  private constructor(upstream: string) {
    this.upstream = new URL(upstream);
  }

  /** A proxy on 127.0.0.1 (a free port) forwarding to `upstream` (the rig's base URL). */
  static async start(upstream: string): Promise<FaultProxy> {
    const proxy = new FaultProxy(upstream);
    await proxy.listen(0);
    return proxy;
  }

  /** http://127.0.0.1:<port>/ */
  get url(): string {
    return `http://127.0.0.1:${this.port}/`;
  }

  /** The rig's S3 endpoint through this proxy. */
  get s3Endpoint(): string {
    return `${this.url}cdn-cgi/local/r2/s3`;
  }

  /** The rig's D1 API base through this proxy. */
  get d1ApiUrl(): string {
    return `${this.url}client/v4`;
  }

  /** Replaces the fault plan. Rules are tried in order; the first one that matches and is not used up applies. */
  plan(rules: FaultRule[]): this {
    this.rules = rules.map((r) => ({ ...r, skipped: 0, applied: 0 }));
    return this;
  }

  /** Adds rules after the current ones. */
  add(...rules: FaultRule[]): this {
    this.rules.push(...rules.map((r) => ({ ...r, skipped: 0, applied: 0 })));
    return this;
  }

  /** No faults from now on. */
  clear(): this {
    this.rules = [];
    return this;
  }

  /** Shorthands. */
  failWith(status: number, code: string | undefined, times = Infinity, match?: FaultRule['match']): this {
    return this.add({ fault: 'status', status, code, times, match });
  }
  stall(ms: number, match?: FaultRule['match'], times = 1, then: 'forward' | 'reset' = 'forward'): this {
    return this.add({ fault: 'stall', ms, match, times, then });
  }
  truncateResponse(match?: FaultRule['match'], times = 1): this {
    return this.add({ fault: 'truncate', match, times });
  }

  /** How many times each rule applied, in plan order. */
  applied(): number[] {
    return this.rules.map((r) => r.applied);
  }

  /** Requests of one operation (all when omitted). */
  seen(op?: S3Operation): SeenRequest[] {
    return op ? this.requests.filter((r) => r.op === op) : [...this.requests];
  }

  /** Requests per operation: { UploadPart: 12, ... }. */
  counts(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const r of this.requests) out[r.op] = (out[r.op] ?? 0) + 1;
    return out;
  }

  /** Called for every request as its head arrives (before any fault). */
  onRequest(listener: (req: SeenRequest) => void): () => void {
    this.listeners.push(listener);
    return () => (this.listeners = this.listeners.filter((l) => l !== listener));
  }

  /**
   * Multipart uploads created (miniflare answered an UploadId) and neither completed nor aborted
   * successfully as far as miniflare is concerned (upstream 2xx, whatever the client got); among the
   * requests from index `fromRequest` on.
   */
  openMultipartUploads(fromRequest = 0): string[] {
    const requests = this.requests.slice(fromRequest);
    const created = new Set(requests.map((r) => r.createdUploadId).filter((id): id is string => !!id));
    for (const r of requests) {
      if ((r.op === 'CompleteMultipartUpload' || r.op === 'AbortMultipartUpload') && r.uploadId && r.upstreamStatus && r.upstreamStatus < 300) {
        created.delete(r.uploadId);
      }
    }
    return [...created];
  }

  /** Requests still in progress (no outcome yet). */
  inFlight(): SeenRequest[] {
    return this.requests.filter((r) => r.outcome === undefined);
  }

  /** Closes the listener and every connection; connections are refused until `ms` has passed. */
  async refuseFor(ms: number): Promise<void> {
    await this.refuse();
    this.refusing = setTimeout(() => void this.accept(), ms);
  }

  /** Closes the listener and every connection now; connections are refused until accept(). */
  async refuse(): Promise<void> {
    clearTimeout(this.refusing);
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const socket of this.sockets) socket.resetAndDestroy();
    this.sockets.clear();
    await closed;
  }

  /** Listens again on the same port. */
  async accept(): Promise<void> {
    clearTimeout(this.refusing);
    if (!this.server) await this.listen(this.port);
  }

  get refusingConnections(): boolean {
    return this.server === undefined;
  }

  async close(): Promise<void> {
    await this.refuse();
    this.agent.destroy();
  }

  private async listen(port: number): Promise<void> {
    const server = createServer((req, res) => void this.handle(req, res));
    server.keepAliveTimeout = 30_000;
    server.on('connection', (socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
    server.on('clientError', (_err, socket) => socket.destroy());
    // Retry briefly if the port is still in TIME_WAIT-like use after a refuse.
    for (let attempt = 0; ; attempt++) {
      try {
        await new Promise<void>((resolve, reject) => {
          server.once('error', reject);
          server.listen(port, '127.0.0.1', () => {
            server.off('error', reject);
            resolve();
          });
        });
        break;
      } catch (err) {
        if (attempt >= 50) throw err;
        await new Promise((r) => setTimeout(r, 20));
      }
    }
    this.port = (server.address() as { port: number }).port;
    this.server = server;
  }

  private pickRule(seen: SeenRequest): ActiveRule | undefined {
    for (const rule of this.rules) {
      if (rule.applied >= (rule.times ?? Infinity)) continue;
      if (rule.match && !rule.match(seen)) continue;
      if (rule.skipped < (rule.skip ?? 0)) {
        rule.skipped++;
        return undefined;
      }
      rule.applied++;
      return rule;
    }
    return undefined;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const method = req.method ?? 'GET';
    const url = req.url ?? '/';
    const length = req.headers['content-length'];
    const seen: SeenRequest = {
      id: this.nextId++,
      method,
      url,
      ...classify(method, url),
      contentLength: length !== undefined ? Number(length) : undefined,
      range: req.headers.range,
      hasSessionToken: req.headers['x-amz-security-token'] !== undefined,
      startedAt: Date.now(),
    };
    this.requests.push(seen);
    for (const listener of this.listeners) listener(seen);
    const finish = (outcome: SeenRequest['outcome']) => {
      if (seen.outcome === undefined) {
        seen.outcome = outcome;
        seen.endedAt = Date.now();
      }
    };
    const reset = () => {
      finish('reset');
      req.socket.resetAndDestroy();
    };
    let clientGone = false;
    res.on('close', () => {
      if (!res.writableFinished) clientGone = true;
      finish(res.writableFinished ? res.statusCode : 'reset');
    });

    const rule = this.pickRule(seen);
    seen.fault = rule?.fault;
    try {
      switch (rule?.fault) {
        case 'reset':
          return reset();
        case 'reset-mid-body': {
          const limit = rule.afterBytes ?? Math.floor((seen.contentLength ?? 0) / 2);
          let received = 0;
          if (limit <= 0) return reset();
          req.on('data', (chunk: Buffer) => {
            received += chunk.length;
            if (received >= limit && seen.outcome === undefined) reset();
          });
          req.on('end', () => seen.outcome === undefined && reset());
          return;
        }
        case 'status': {
          await drain(req);
          return this.answerError(seen, res, rule.status ?? 503, rule.code, rule.message);
        }
        case 'stall': {
          const body = await drain(req);
          const gaveUp = await closedWithin(res, rule.ms ?? 1000);
          if (gaveUp || clientGone) {
            seen.clientGaveUp = true;
            return finish('none');
          }
          if (rule.then === 'reset') return reset();
          return await this.forward(seen, req, res, body, false);
        }
        case 'delay': {
          const body = await drain(req);
          if (await closedWithin(res, rule.ms ?? 200)) {
            seen.clientGaveUp = true;
            return finish('none');
          }
          return await this.forward(seen, req, res, body, false);
        }
        case 'truncate':
          return await this.forward(seen, req, res, undefined, true);
        default:
          return await this.forward(seen, req, res, undefined, false);
      }
    } catch {
      if (!res.headersSent && !res.destroyed) {
        res.writeHead(502, { 'content-type': 'text/plain' });
        res.end('fault proxy: upstream failed');
        finish(502);
      } else {
        reset();
      }
    }
  }

  private answerError(seen: SeenRequest, res: ServerResponse, status: number, code?: string, message?: string): void {
    const codeText = code ?? DEFAULT_CODES[status] ?? 'InternalError';
    const text = message ?? `injected by the fault proxy: ${codeText}`;
    if (seen.op === 'D1Query') {
      const body = JSON.stringify({ success: false, errors: [{ code: 7500 + (status % 100), message: text }], messages: [], result: null });
      res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    } else {
      const body = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${codeText}</Code><Message>${text}</Message><RequestId>fault-${seen.id}</RequestId></Error>`;
      const headers: Record<string, string | number> = { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(body) };
      res.writeHead(status, headers);
      res.end(seen.method === 'HEAD' ? undefined : body);
    }
  }

  /** Sends the request to miniflare (the body streamed, or the one already read) and relays the answer. */
  private forward(seen: SeenRequest, req: IncomingMessage, res: ServerResponse, body: Buffer | undefined, truncate: boolean): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const upstreamReq = httpRequest(
        {
          host: this.upstream.hostname,
          port: this.upstream.port,
          method: req.method,
          path: req.url,
          headers: req.headers, // Host included, unchanged: the signature covers it
          agent: this.agent,
        },
        (upstreamRes) => {
          seen.upstreamStatus = upstreamRes.statusCode;
          const chunks: Buffer[] = [];
          const capture = seen.op === 'CreateMultipartUpload';
          if (!truncate) {
            res.writeHead(upstreamRes.statusCode ?? 502, upstreamRes.headers);
            upstreamRes.on('data', (chunk: Buffer) => {
              if (capture) chunks.push(chunk);
              res.write(chunk);
            });
            upstreamRes.on('end', () => {
              if (capture) seen.createdUploadId = /<UploadId>([^<]+)<\/UploadId>/.exec(Buffer.concat(chunks).toString('utf8'))?.[1];
              res.end();
              resolve();
            });
            upstreamRes.on('error', reject);
            return;
          }
          // Truncated: the whole answer is read from upstream (it took effect there), half is relayed.
          upstreamRes.on('data', (chunk: Buffer) => chunks.push(chunk));
          upstreamRes.on('error', reject);
          upstreamRes.on('end', () => {
            const all = Buffer.concat(chunks);
            if (capture) seen.createdUploadId = /<UploadId>([^<]+)<\/UploadId>/.exec(all.toString('utf8'))?.[1];
            if (all.length < 2) {
              seen.outcome = 'reset';
              seen.endedAt = Date.now();
              req.socket.resetAndDestroy();
              return resolve();
            }
            res.writeHead(upstreamRes.statusCode ?? 502, { ...upstreamRes.headers, 'content-length': String(all.length) });
            res.write(all.subarray(0, Math.floor(all.length / 2)), () => {
              seen.outcome = 'reset';
              seen.endedAt = Date.now();
              setTimeout(() => req.socket.resetAndDestroy(), 20);
              resolve();
            });
          });
        },
      );
      upstreamReq.on('error', reject);
      // The client went away mid-request: stop the upstream request too.
      res.on('close', () => {
        if (!res.writableFinished) upstreamReq.destroy();
      });
      if (body) upstreamReq.end(body);
      else req.pipe(upstreamReq);
    });
  }
}

function drain(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', () => resolve(Buffer.concat(chunks)));
    req.on('close', () => resolve(Buffer.concat(chunks)));
  });
}

/** Resolves true if the response's connection closes within `ms`, false after `ms`. */
function closedWithin(res: ServerResponse, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    if (res.destroyed || res.socket?.destroyed) return resolve(true);
    const timer = setTimeout(() => {
      res.off('close', onClose);
      resolve(false);
    }, ms);
    const onClose = () => {
      clearTimeout(timer);
      resolve(true);
    };
    res.on('close', onClose);
  });
}

// ---------------------------------------------------------------- wiring and bookkeeping for the fault tests

/**
 * Environment overrides pointing r2d1 at the rig through proxies: `s3` for R2's S3 endpoint, `d1` for the
 * D1 API (either may be omitted: that side goes straight to the rig).
 */
export function viaProxies(s3?: FaultProxy, d1?: FaultProxy): Record<string, string> {
  const out: Record<string, string> = {};
  if (s3) out.R2D1_R2_ENDPOINT_URL = s3.s3Endpoint;
  if (d1) out.R2D1_D1_API_URL = d1.d1ApiUrl;
  return out;
}

export type RunOutcome = 'committed' | 'lost' | 'corrupted';

/**
 * Records the outcome of one run of a fault, for the README's Reliability table: one JSON line per run
 * appended to the file named by R2D1_FAULT_TALLY (nothing is written when it is unset).
 */
export function tally(suite: string, fault: string, outcome: RunOutcome, detail: Record<string, unknown> = {}): void {
  const file = process.env.R2D1_FAULT_TALLY;
  if (!file) return;
  appendFileSync(file, `${JSON.stringify({ suite, fault, outcome, ...detail })}\n`);
}

// ---------------------------------------------------------------- a courier in a child process

/**
 * Why a child process: inside jest's VM context, errors created by Node itself (ECONNRESET, ECONNREFUSED,
 * socket hang up) are not `instanceof Error` of the test realm, and the AWS SDK (loaded in that realm)
 * then wraps them as "AWS SDK error wrapper for …", dropping their code: neither the SDK nor r2d1 can see
 * that they are network errors. Network faults are therefore driven against a courier running in a plain
 * Node process (the built lib/), as in production; HTTP-status faults behave the same in either.
 */
const DRIVER = String.raw`
import { createInterface } from 'node:readline';
const spec = JSON.parse(process.argv[1]);
const { Courier, loadConfig, openBackends } = await import(spec.lib);
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const say = (value) => process.stdout.write(JSON.stringify(value) + '\n');
for (;;) {
  say({ ready: true });
  const next = await lines.next();
  if (next.done) break;
  const run = JSON.parse(next.value);
  const logs = [];
  const at = (level) => (m) => logs.push(level + ' ' + m);
  const logger = { debug() {}, info: at('info'), warn: at('warn'), error: at('error') };
  const courier = new Courier(openBackends(loadConfig(spec.env), logger, spec.s3), { logger, tuning: spec.courier });
  const started = Date.now();
  let report;
  try {
    report = await courier.ship(run.dir, { jobId: run.job, timeout: spec.timeout });
  } catch (err) {
    report = { ok: false, shipped: [], failed: [{ name: '(ship threw)', reason: String(err) }], d1Pending: [] };
  }
  const seconds = (Date.now() - started) / 1000;
  courier.close(); // as the CLI does right after its report
  say({ report, seconds, logs });
}
`;

export interface DriverResult {
  report: { ok: boolean; shipped: { name: string; epoch: number }[]; failed: { name: string; epoch?: number; reason: string }[]; d1Pending: string[] };
  seconds: number;
  logs: string[];
}

/**
 * A courier in a child Node process using the built library: each `run({dir, job})` is one
 * `courier.ship(dir, {jobId: job})` with a fresh Courier (and S3 client), as `r2d1 ship` does.
 */
export class ShipDriver {
  private readonly child: ChildProcess;
  private buffer = '';
  private readonly waiting: ((line: Record<string, unknown>) => void)[] = [];
  private readonly queued: Record<string, unknown>[] = [];
  stderr = '';
  private exited = false;

  constructor(spec: { env: Record<string, string>; s3?: Record<string, unknown>; courier?: Record<string, unknown>; timeout: number }) {
    const lib = pathToFileURL(join(REPO, 'lib', 'index.js')).href;
    this.child = spawn(process.execPath, ['--input-type=module', '-e', DRIVER, JSON.stringify({ ...spec, lib })], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      this.buffer += d;
      let cut;
      while ((cut = this.buffer.indexOf('\n')) >= 0) {
        const line = this.buffer.slice(0, cut);
        this.buffer = this.buffer.slice(cut + 1);
        if (!line.startsWith('{')) continue;
        const value = JSON.parse(line) as Record<string, unknown>;
        const waiter = this.waiting.shift();
        if (waiter) waiter(value);
        else this.queued.push(value);
      }
    });
    this.child.stderr!.setEncoding('utf8').on('data', (d: string) => (this.stderr += d));
    this.child.on('exit', () => (this.exited = true));
  }

  private next(timeoutMs: number): Promise<Record<string, unknown>> {
    const queued = this.queued.shift();
    if (queued) return Promise.resolve(queued);
    if (this.exited) return Promise.reject(new Error(`courier driver exited\n${this.stderr}`));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`courier driver: no answer within ${timeoutMs} ms\n${this.stderr}`)), timeoutMs);
      const onExit = () => reject(new Error(`courier driver exited early\n${this.stderr}`));
      this.child.once('exit', onExit);
      this.waiting.push((value) => {
        clearTimeout(timer);
        this.child.off('exit', onExit);
        resolve(value);
      });
    });
  }

  /** Waits until the driver is ready, ships `dir` as job `job`, and returns the report. */
  async run(target: { dir: string; job: string }, timeoutMs = 60_000): Promise<DriverResult> {
    await this.next(20_000);
    this.child.stdin!.write(`${JSON.stringify(target)}\n`);
    return (await this.next(timeoutMs)) as unknown as DriverResult;
  }

  close(): void {
    this.child.stdin!.end();
    this.child.kill('SIGKILL');
  }
}

/**
 * The per-file scaffolding of the faults suites: cleanups run after each test (in reverse), child CLI
 * processes and the shared S3 client are closed after the file; temp dirs and proxies register their
 * own cleanup.
 */
export function faultScope(tempPrefix: string): {
  cleanups: (() => unknown)[];
  tempDir: (prefix?: string) => Promise<string>;
  startProxy: () => Promise<FaultProxy>;
} {
  const cleanups: (() => unknown)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });
  afterAll(() => {
    killAllStarted();
    closeS3();
  });
  return {
    cleanups,
    tempDir: async (prefix = tempPrefix) => {
      const dir = await makeTempDir(prefix);
      cleanups.push(() => rm(dir, { recursive: true, force: true }));
      return dir;
    },
    startProxy: async () => {
      const proxy = await FaultProxy.start(rig().url);
      cleanups.push(() => proxy.close());
      return proxy;
    },
  };
}
