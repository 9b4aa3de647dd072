/**
 * Jest global setup: starts one Miniflare instance for the whole run, serving
 *  - R2's S3-compatible API at `<url>/cdn-cgi/local/r2/s3` (path-style, SigV4-checked), and
 *  - a stand-in for Cloudflare's D1 REST API at `<url>/client/v4/accounts/<acct>/d1/database/<db>/query`,
 * and writes the connection details to the JSON file named by process.env.R2D1_RIG_FILE
 * (read by tests through `rig()` in ./rig.ts).
 *
 * Runs in Jest's parent process. Test workers are forked after this resolves, so they inherit
 * R2D1_RIG_FILE; the Miniflare handle stays on globalThis for ./globalTeardown.ts.
 *
 * Keep this file (and globalTeardown.ts) self-contained: Jest loads global hooks outside jest-runtime
 * (ts-jest output, loaded through Node's require(esm), Node >= 20.19), so moduleNameMapper does not apply and
 * a relative `./x.js` import of a .ts file would not resolve. Type-only imports are fine (erased).
 *
 * Set R2D1_RIG_DEBUG=1 to print the rig URL and startup time and to see workerd's own stdout/stderr.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { Miniflare } from 'miniflare';
import type { RigInfo } from './rig.js';

export const RIG_GLOBAL_KEY = '__R2D1_RIG__'; // same key as in globalTeardown.ts

export interface RigHandle {
  mf: Miniflare;
  file: string;
}

/**
 * Worker answering the D1 REST API query endpoint through the D1 binding `DB`.
 * Mirrors the Cloudflare v4 envelope: { success, errors: [{code, message}], messages, result }.
 *   POST /client/v4/accounts/{account_id}/d1/database/{database_id}/query
 *   body: { sql, params? } or { batch: [{ sql, params? }, ...] }
 *   200: result = one QueryResult { results, success, meta } per statement
 *   401 code 10000 (bad/missing bearer token), 404 code 7404 (unknown account/database),
 *   400 code 7400 (malformed body), 400 code 7500 (SQL error, D1's message), 404 7003/7000 (no route).
 */
export const D1_API_WORKER = String.raw`
const JSON_HEADERS = { 'content-type': 'application/json; charset=utf-8' };

function envelope(status, success, errors, result) {
  return new Response(JSON.stringify({ success, errors, messages: [], result }), { status, headers: JSON_HEADERS });
}
function fail(status, code, message) {
  return envelope(status, false, [{ code, message }], null);
}

// Splits SQL text into statements at top-level semicolons, skipping quoted text, comments and
// trigger bodies (CREATE TRIGGER ... BEGIN ... END). Statements holding only comments are dropped.
function splitStatements(sql) {
  const out = [];
  let start = 0, hasContent = false, i = 0, depth = 0, isTrigger = false, words = 0;
  const n = sql.length;
  const push = (end) => {
    if (hasContent) out.push(sql.slice(start, end).trim());
    start = end + 1; hasContent = false; depth = 0; isTrigger = false; words = 0;
  };
  while (i < n) {
    const c = sql[i];
    if (c === '-' && sql[i + 1] === '-') { const e = sql.indexOf('\n', i); i = e < 0 ? n : e + 1; continue; }
    if (c === '/' && sql[i + 1] === '*') { const e = sql.indexOf('*/', i + 2); i = e < 0 ? n : e + 2; continue; }
    if (c === "'" || c === '"' || c === '${'`'}' || c === '[') {
      const close = c === '[' ? ']' : c;
      let j = i + 1;
      while (j < n) { if (sql[j] === close) { if (close !== ']' && sql[j + 1] === close) { j += 2; continue; } break; } j++; }
      hasContent = true; i = j + 1; continue;
    }
    if (c === ';') { if (depth === 0) push(i); i++; continue; }
    if (/[A-Za-z_]/.test(c)) {
      let j = i + 1;
      while (j < n && /[A-Za-z0-9_$]/.test(sql[j])) j++;
      const w = sql.slice(i, j).toUpperCase();
      hasContent = true; words++;
      if (words <= 4 && w === 'TRIGGER') isTrigger = true;
      if (isTrigger) {
        if (w === 'BEGIN' || w === 'CASE') depth++;
        else if (w === 'END' && depth > 0) depth--;
      }
      i = j; continue;
    }
    if (!/\s/.test(c)) hasContent = true;
    i++;
  }
  push(n);
  return out;
}

function d1Message(e) {
  const message = e instanceof Error ? e.message : String(e);
  return message.replace(/^D1_[A-Z_]*ERROR:\s*/, '');
}

function toQueryResult(r) {
  return { results: r.results ?? [], success: r.success !== false, meta: r.meta ?? {} };
}

function invalid(message) {
  return fail(400, 7400, message);
}

// Validates one { sql, params? } object; returns an error Response or the statements to prepare.
function plan(db, query, where) {
  if (query === null || typeof query !== 'object' || Array.isArray(query)) return invalid('Invalid property: ' + where + ' => Expected object');
  if (typeof query.sql !== 'string') return invalid('Invalid property: ' + where + 'sql => Required');
  if (query.params !== undefined && !Array.isArray(query.params)) return invalid('Invalid property: ' + where + 'params => Expected array');
  const params = query.params ?? [];
  const statements = splitStatements(query.sql);
  if (statements.length === 0) return invalid('Invalid property: ' + where + 'sql => Empty query');
  // With params, several statements are left to D1 as one prepared statement (its own behaviour).
  if (statements.length === 1 || params.length > 0) return [db.prepare(query.sql).bind(...params)];
  return statements.map((s) => db.prepare(s));
}

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const m = /^\/client\/v4\/accounts\/([^/]+)\/d1\/database\/([^/]+)\/query\/?$/.exec(url.pathname);
    if (!m) {
      return envelope(404, false, [
        { code: 7003, message: 'Could not route to ' + url.pathname + ', perhaps your object identifier is invalid?' },
        { code: 7000, message: 'No route for that URI' },
      ], null);
    }
    const auth = request.headers.get('authorization') ?? '';
    const token = /^Bearer\s+(.+)$/i.exec(auth)?.[1]?.trim();
    if (token !== env.API_TOKEN) return fail(401, 10000, 'Authentication error');
    if (request.method !== 'POST') return fail(405, 10405, 'Method not allowed');
    const accountId = decodeURIComponent(m[1]);
    const databaseId = decodeURIComponent(m[2]);
    if (accountId !== env.ACCOUNT_ID) return fail(404, 7404, 'Could not find account ' + accountId);
    if (databaseId !== env.DATABASE_ID) return fail(404, 7404, 'The database ' + databaseId + ' could not be found');

    let body;
    try {
      body = JSON.parse(await request.text());
    } catch {
      return invalid('Invalid request body: malformed JSON');
    }
    if (body === null || typeof body !== 'object' || Array.isArray(body)) return invalid('Invalid request body: expected an object');

    let statements = [];
    if (body.batch !== undefined) {
      if (!Array.isArray(body.batch) || body.batch.length === 0) return invalid('Invalid property: batch => Expected non-empty array');
      for (let k = 0; k < body.batch.length; k++) {
        const p = plan(env.DB, body.batch[k], 'batch.' + k + '.');
        if (p instanceof Response) return p;
        statements.push(...p);
      }
    } else {
      const p = plan(env.DB, body, '');
      if (p instanceof Response) return p;
      statements = p;
    }

    try {
      const results = statements.length === 1 ? [await statements[0].all()] : await env.DB.batch(statements);
      return envelope(200, true, [], results.map(toQueryResult));
    } catch (e) {
      return fail(400, 7500, d1Message(e));
    }
  },
};
`;

function randomHex(bytes: number): string {
  return randomBytes(bytes).toString('hex');
}

export default async function globalSetup(): Promise<void> {
  const started = Date.now();
  const debug = Boolean(process.env.R2D1_RIG_DEBUG);
  const bucket = 'r2d1-test';
  const accessKeyId = randomHex(16);
  const secretAccessKey = randomHex(32);
  const accountId = randomHex(16);
  const apiToken = randomHex(20);
  const databaseId = randomUUID();

  const mf = new Miniflare({
    host: '127.0.0.1',
    port: 0,
    modules: true,
    script: D1_API_WORKER,
    compatibilityDate: '2025-01-01',
    bindings: { ACCOUNT_ID: accountId, API_TOKEN: apiToken, DATABASE_ID: databaseId },
    r2Buckets: { BUCKET: { id: bucket, s3Credentials: { accessKeyId, secretAccessKey } } },
    d1Databases: { DB: databaseId },
    // workerd writes noise to stderr (e.g. "NOSENTRY R2MultipartUpload::getUploadId called" on multipart
    // uploads, "Network connection lost" when a client aborts). Forward it only when debugging the rig.
    handleRuntimeStdio(stdout: Readable, stderr: Readable) {
      if (debug) {
        stdout.pipe(process.stderr);
        stderr.pipe(process.stderr);
      } else {
        stdout.resume();
        stderr.resume();
      }
    },
  });
  let url: URL;
  try {
    url = await mf.ready;
  } catch (e) {
    await mf.dispose().catch(() => undefined);
    throw e;
  }

  const base = url.href.endsWith('/') ? url.href : `${url.href}/`;
  const info: RigInfo = {
    url: base,
    s3Endpoint: `${base}cdn-cgi/local/r2/s3`,
    bucket,
    accessKeyId,
    secretAccessKey,
    accountId,
    apiToken,
    databaseId,
    d1ApiUrl: `${base}client/v4`,
  };
  const file = join(tmpdir(), `r2d1-rig-${process.pid}-${randomHex(4)}.json`);
  writeFileSync(file, JSON.stringify(info, null, 2), { mode: 0o600 });
  process.env.R2D1_RIG_FILE = file;
  (globalThis as Record<string, unknown>)[RIG_GLOBAL_KEY] = { mf, file } satisfies RigHandle;

  if (debug) {
    console.log(`\n[rig] miniflare at ${base} (started in ${Date.now() - started} ms), rig file ${file}`);
  }
}
