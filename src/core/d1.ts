import type { D1Settings } from './config.js';
import { R2d1Error, isRetryable } from './errors.js';
import { withRetry, type RetryPolicy, type Sleep } from './retry.js';

export type SqlValue = string | number | null;

/** The seed's schema, unchanged: one row per (job, checkpoint name), replaced on every commit. */
export const CHECKPOINTS_SCHEMA = `CREATE TABLE IF NOT EXISTS checkpoints (
    job_id    TEXT    NOT NULL,
    name      TEXT    NOT NULL,
    epoch     INTEGER NOT NULL,
    timestamp REAL    NOT NULL,
    r2_prefix TEXT    NOT NULL,
    metadata  TEXT    DEFAULT '{}',
    PRIMARY KEY (job_id, name)
)`;

export interface CheckpointRow {
  job_id: string;
  name: string;
  epoch: number;
  timestamp: number;
  r2_prefix: string;
  metadata: string;
}

interface Envelope<T> {
  success?: boolean;
  errors?: { code?: number; message?: string }[];
  result?: { results?: T[]; success?: boolean }[] | null;
}

export interface D1ClientOptions {
  retry?: Partial<RetryPolicy>;
  sleep?: Sleep;
  /** Per-request timeout. */
  timeoutMs?: number;
  fetch?: typeof fetch;
}

/** Cloudflare D1 through its REST API: `POST /accounts/{account}/d1/database/{db}/query`. */
export class D1Client {
  private readonly url: string;
  private schemaReady?: Promise<void>;

  constructor(private readonly settings: D1Settings, private readonly opts: D1ClientOptions = {}) {
    this.url = `${settings.apiUrl}/accounts/${encodeURIComponent(settings.accountId)}/d1/database/${encodeURIComponent(settings.databaseId)}/query`;
  }

  /** Runs one statement and returns its rows; retries 429, 5xx and network errors with jittered backoff. */
  async query<T = Record<string, unknown>>(sql: string, params: SqlValue[] = []): Promise<T[]> {
    return withRetry(() => this.queryOnce<T>(sql, params), { ...this.opts.retry, sleep: this.opts.sleep, retryable: isRetryable });
  }

  private async queryOnce<T>(sql: string, params: SqlValue[]): Promise<T[]> {
    let response: Response;
    try {
      response = await (this.opts.fetch ?? fetch)(this.url, {
        method: 'POST',
        headers: { authorization: `Bearer ${this.settings.apiToken}`, 'content-type': 'application/json' },
        body: JSON.stringify({ sql, params }),
        signal: AbortSignal.timeout(this.opts.timeoutMs ?? 30_000),
      });
    } catch (err) {
      throw new R2d1Error('D1', `D1 at ${this.settings.apiUrl} is unreachable: ${causeMessage(err)}`, {
        hint: 'check R2D1_D1_API_URL and your network',
        retryable: true,
        cause: err,
      });
    }
    const text = await response.text().catch(() => '');
    let envelope: Envelope<T> | undefined;
    try {
      envelope = JSON.parse(text) as Envelope<T>;
    } catch {
      envelope = undefined;
    }
    if (response.ok && envelope?.success && Array.isArray(envelope.result)) {
      return envelope.result.at(-1)?.results ?? [];
    }
    const apiMessages = (envelope?.errors ?? []).map((e) => `${e.message ?? 'error'}${e.code ? ` [${e.code}]` : ''}`).join('; ');
    const detail = apiMessages || `unexpected response ${JSON.stringify(text.slice(0, 200))}`;
    const status = response.status;
    let hint = 'check the SQL and the D1 database';
    if (status === 401 || status === 403) hint = 'check R2D1_API_TOKEN: it needs the "D1 Edit" permission on this account';
    else if (status === 404) hint = 'check R2D1_ACCOUNT_ID and R2D1_D1_DATABASE_ID';
    else if (status === 429 || status >= 500) hint = 'D1 is overloaded or down; r2d1 retries with backoff';
    throw new R2d1Error('D1', `D1 query failed (HTTP ${status}): ${detail}`, {
      hint,
      retryable: status === 429 || status >= 500,
    });
  }

  /** `CREATE TABLE IF NOT EXISTS` once per client, before the first use. */
  ensureSchema(): Promise<void> {
    this.schemaReady ??= this.query(CHECKPOINTS_SCHEMA).then(
      () => undefined,
      (err) => {
        this.schemaReady = undefined; // try again next time
        throw err;
      },
    );
    return this.schemaReady;
  }

  /** Records a committed checkpoint. A late write of an older sidecar never replaces a newer one. */
  async recordCheckpoint(row: CheckpointRow): Promise<void> {
    await this.ensureSchema();
    await this.query(
      `INSERT INTO checkpoints (job_id, name, epoch, timestamp, r2_prefix, metadata) VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT (job_id, name) DO UPDATE SET epoch = excluded.epoch, timestamp = excluded.timestamp,
         r2_prefix = excluded.r2_prefix, metadata = excluded.metadata
       WHERE excluded.timestamp >= checkpoints.timestamp`,
      [row.job_id, row.name, row.epoch, row.timestamp, row.r2_prefix, row.metadata],
    );
  }

  /** The job's checkpoints, highest epoch first (the newest timestamp breaks ties). */
  async listCheckpoints(jobId: string): Promise<CheckpointRow[]> {
    await this.ensureSchema();
    return this.query<CheckpointRow>(
      'SELECT job_id, name, epoch, timestamp, r2_prefix, metadata FROM checkpoints WHERE job_id = ? ORDER BY epoch DESC, timestamp DESC',
      [jobId],
    );
  }
}

function causeMessage(err: unknown): string {
  const e = err as { name?: string; message?: string; code?: string; cause?: { code?: string; message?: string } };
  if (e?.name === 'TimeoutError') return 'request timed out';
  const inner = e?.cause ?? e;
  const code = inner?.code ?? e?.code;
  const message = inner?.message ?? e?.message ?? String(err);
  return code && !message.includes(code) ? `${code} ${message}` : message;
}
