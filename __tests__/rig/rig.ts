/**
 * Test-side helpers for the Miniflare rig started by ./globalSetup.ts.
 * Import from tests as `import { rig, rigEnv, ... } from './rig/rig.js'`.
 */
import { S3Client, type S3ClientConfig } from '@aws-sdk/client-s3';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface RigInfo {
  /** Miniflare base URL, with a trailing slash: http://127.0.0.1:<port>/ */
  url: string;
  /** R2's S3 API (path-style): `${s3Endpoint}/<bucket>/<key>` */
  s3Endpoint: string;
  bucket: string;
  accessKeyId: string;
  secretAccessKey: string;
  accountId: string;
  apiToken: string;
  databaseId: string;
  /** D1 REST base: POST `${d1ApiUrl}/accounts/${accountId}/d1/database/${databaseId}/query` */
  d1ApiUrl: string;
}

let cached: RigInfo | undefined;

export function rig(): RigInfo {
  if (cached) return cached;
  const file = process.env.R2D1_RIG_FILE;
  if (!file) {
    throw new Error('R2D1_RIG_FILE is not set: run the tests through jest with __tests__/rig/globalSetup.ts as globalSetup');
  }
  cached = JSON.parse(readFileSync(file, 'utf8')) as RigInfo;
  return cached;
}

/**
 * The project's environment variables pointing at the rig. Only these variables are returned
 * (not merged with process.env). An override whose value is undefined removes that variable.
 */
export function rigEnv(overrides: Record<string, string | undefined> = {}): Record<string, string> {
  const r = rig();
  const env: Record<string, string | undefined> = {
    R2D1_ACCOUNT_ID: r.accountId,
    R2D1_R2_BUCKET: r.bucket,
    R2D1_R2_ACCESS_KEY: r.accessKeyId,
    R2D1_R2_SECRET_KEY: r.secretAccessKey,
    R2D1_R2_ENDPOINT_URL: r.s3Endpoint,
    R2D1_API_TOKEN: r.apiToken,
    R2D1_D1_DATABASE_ID: r.databaseId,
    R2D1_D1_API_URL: r.d1ApiUrl,
    ...overrides,
  };
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) if (v !== undefined) out[k] = v;
  return out;
}

/** A job id unique to this run and call: `${prefix}-<base36 time>-<8 hex>`. */
export function uniqueJobId(prefix = 'job'): string {
  return `${prefix}-${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`;
}

/** The rig's D1 query endpoint. */
export function d1QueryUrl(r: RigInfo = rig()): string {
  return `${r.d1ApiUrl}/accounts/${r.accountId}/d1/database/${r.databaseId}/query`;
}

export interface D1Envelope<T = Record<string, unknown>> {
  success: boolean;
  errors: { code: number; message: string }[];
  messages: { code: number; message: string }[];
  result: { results: T[]; success: boolean; meta: Record<string, unknown> }[] | null;
}

/**
 * Raw POST to the rig's D1 endpoint: returns HTTP status and parsed envelope.
 * `body` is sent as JSON unless it is a string; `token` defaults to the rig's token (null: no header).
 */
export async function d1Request(
  body: unknown,
  opts: { token?: string | null; url?: string; method?: string } = {},
): Promise<{ status: number; body: D1Envelope }> {
  const token = opts.token === undefined ? rig().apiToken : opts.token;
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (token !== null) headers.authorization = `Bearer ${token}`;
  const res = await fetch(opts.url ?? d1QueryUrl(), {
    method: opts.method ?? 'POST',
    headers,
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as D1Envelope };
}

/** Runs SQL on the rig's D1 through its REST endpoint; returns the rows of the first statement's result. */
export async function d1Query<T = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<T[]> {
  const { status, body } = await d1Request(params ? { sql, params } : { sql });
  if (status !== 200 || !body.success || !body.result) {
    throw new Error(`D1 query failed (${status}): ${body.errors.map((e) => `[${e.code}] ${e.message}`).join('; ')}`);
  }
  return body.result[0]!.results as T[];
}

/** A fresh, empty directory under the OS temp dir. */
export async function makeTempDir(prefix = 'r2d1-test-'): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix));
}

/** An S3 client on the rig's bucket, configured as r2d1 needs it against miniflare. */
export function rigS3Client(overrides: Partial<S3ClientConfig> = {}): S3Client {
  const r = rig();
  return new S3Client({
    region: 'auto',
    endpoint: r.s3Endpoint,
    forcePathStyle: true,
    credentials: { accessKeyId: r.accessKeyId, secretAccessKey: r.secretAccessKey },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    // miniflare's S3 endpoint stalls on `Expect: 100-continue` (sent by default for bodies >= 2 MiB)
    expectContinueHeader: false,
    ...overrides,
  });
}
