import type { D1Settings } from './config.js';
import { type RetryPolicy, type Sleep } from './retry.js';
export type SqlValue = string | number | null;
/** The seed's schema, unchanged: one row per (job, checkpoint name), replaced on every commit. */
export declare const CHECKPOINTS_SCHEMA = "CREATE TABLE IF NOT EXISTS checkpoints (\n    job_id    TEXT    NOT NULL,\n    name      TEXT    NOT NULL,\n    epoch     INTEGER NOT NULL,\n    timestamp REAL    NOT NULL,\n    r2_prefix TEXT    NOT NULL,\n    metadata  TEXT    DEFAULT '{}',\n    PRIMARY KEY (job_id, name)\n)";
export interface CheckpointRow {
    job_id: string;
    name: string;
    epoch: number;
    timestamp: number;
    r2_prefix: string;
    metadata: string;
}
export interface D1ClientOptions {
    retry?: Partial<RetryPolicy>;
    sleep?: Sleep;
    /** Per-request timeout. */
    timeoutMs?: number;
    fetch?: typeof fetch;
}
/** Cloudflare D1 through its REST API: `POST /accounts/{account}/d1/database/{db}/query`. */
export declare class D1Client {
    private readonly settings;
    private readonly opts;
    private readonly url;
    private schemaReady?;
    constructor(settings: D1Settings, opts?: D1ClientOptions);
    /** Runs one statement and returns its rows; retries 429, 5xx and network errors with jittered backoff. */
    query<T = Record<string, unknown>>(sql: string, params?: SqlValue[]): Promise<T[]>;
    private queryOnce;
    /** `CREATE TABLE IF NOT EXISTS` once per client, before the first use. */
    ensureSchema(): Promise<void>;
    /** Records a committed checkpoint. A late write of an older sidecar never replaces a newer one. */
    recordCheckpoint(row: CheckpointRow): Promise<void>;
    /** The job's checkpoints, highest epoch first (the newest timestamp breaks ties). */
    listCheckpoints(jobId: string): Promise<CheckpointRow[]>;
}
