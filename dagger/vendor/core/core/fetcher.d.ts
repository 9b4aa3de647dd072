import { type Backends } from './backends.js';
import { Catalog, type CommittedCheckpoint } from './catalog.js';
import { type Env } from './config.js';
import { type Logger } from './logger.js';
import { type Planned, type Progress } from './transfer.js';
export interface FetchInfo {
    /** False on a fresh start (nothing committed yet); never an error. */
    found: boolean;
    source: string;
    localDir: string;
    name?: string;
    epoch?: number;
    metadata?: Record<string, unknown>;
    /** True when everything was already on disk and verified: nothing was downloaded. */
    cached: boolean;
    /** Bytes of the checkpoint or prefix (downloaded or not). */
    bytes: number;
    files: number;
    /** Bytes actually transferred. */
    downloaded: number;
    /** Version key prefix in the bucket (checkpoints only). */
    key?: string;
}
export interface PullOptions {
    dest: string;
    /** Download even what is on disk and verified. */
    force?: boolean;
    /**
     * Re-hash a checkpoint already on disk against the manifest before trusting it, instead of its
     * recorded sizes and times: for files that arrived another way (restored from a cache).
     */
    verify?: boolean;
}
export interface FetcherTuning {
    fileConcurrency: number;
    /** Files above this size come as parallel ranged parts of this size. */
    partSize: number;
    partsInFlight: number;
    /** Large files downloaded at once (their parts are written as they arrive: memory does not grow with partSize). */
    bigFileConcurrency: number;
}
/** From bench/ measurements: 64 MiB ranges, 8 at once, pulled fastest at the same memory as 8 MiB ones. */
export declare const DEFAULT_FETCHER_TUNING: FetcherTuning;
/**
 * Pulls checkpoints and prefixes from the bucket to local disk. Every file is verified (size and
 * SHA-256 from the manifest) before the folder is renamed into place: a reader never sees a
 * partial or mixed checkpoint.
 */
export declare class Fetcher {
    private readonly backends;
    readonly catalog: Catalog;
    private readonly logger;
    private readonly tuning;
    private readonly onProgress?;
    private readonly onPlanned?;
    constructor(backends: Backends, opts?: {
        logger?: Logger;
        tuning?: Partial<FetcherTuning>;
        onProgress?: Progress;
        onPlanned?: Planned;
    });
    static fromEnv(env?: Env, opts?: ConstructorParameters<typeof Fetcher>[1]): Fetcher;
    /**
     * `r2://jobs/<id>/latest` and `r2://jobs/<id>/<name>` land in `dest/<name>/` with the sidecar at
     * `dest/<name>.json`; `r2://<prefix>` mirrors the prefix into `dest/`. A fresh start returns
     * `found: false`; an unreachable or misconfigured bucket is an error, never a fresh start.
     */
    pull(uri: string, opts: PullOptions): Promise<FetchInfo>;
    close(): void;
    /**
     * What `pull(uri)` would fetch, without fetching it: a fingerprint of the remote content (the
     * committed version for checkpoints; keys, sizes and ETags for prefixes) and the local paths a pull
     * into `dest` writes. For caches keyed by remote content.
     */
    resolve(uri: string, dest: string): Promise<{
        found: boolean;
        fingerprint: string;
        paths: string[];
    }>;
    private land;
    /** Downloads every file of the manifest under `dir`, verifying size and SHA-256; returns bytes moved. */
    private downloadManifest;
    /**
     * Landed before, and every file still has the size and mtime it had when it was verified (or,
     * with `rehash`, the manifest's SHA-256).
     */
    private isLanded;
    /**
     * Mirrors every object under `prefix` into `dest`, skipping files already there with the same
     * size and content (MD5 against a plain ETag; size and time for multipart ETags). Each file
     * lands by rename after it is verified, so no file is ever partial.
     */
    private mirror;
    /** Every committed checkpoint of the job (the newest version of each slot), highest epoch first. */
    list(jobId: string): Promise<CommittedCheckpoint[]>;
}
