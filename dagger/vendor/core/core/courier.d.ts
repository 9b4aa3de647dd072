import { type Env } from './config.js';
import { type Logger } from './logger.js';
import { type Backends } from './backends.js';
import { type Planned, type Progress } from './transfer.js';
export interface WatchOptions {
    jobId: string;
    /** Seconds between full rescans, the safety net under file-system events (default 30). */
    pollEvery?: number;
    /** Committed versions kept per slot (default 1: superseded versions are deleted). */
    keep?: number;
}
export interface ShippedCheckpoint {
    name: string;
    epoch: number;
    bytes: number;
    files: number;
    /** Key prefix of the committed version's files. */
    key: string;
    seconds: number;
}
export interface FailedCheckpoint {
    name: string;
    epoch?: number;
    reason: string;
}
export interface ShipReport {
    ok: boolean;
    shipped: ShippedCheckpoint[];
    failed: FailedCheckpoint[];
    /** D1 rows not written by the end of the flush (the data is in the bucket; `latest` still finds it). */
    d1Pending: string[];
}
export interface CourierTuning {
    /** Files uploaded at once, across all slots. */
    fileConcurrency: number;
    /**
     * Of those, files above `bigFileBytes` uploaded at once. A file is held in memory whole up to the
     * part size, above it parts in flight × part size: the two limits bound the courier's memory
     * (fileConcurrency × bigFileBytes + bigFileConcurrency × partsInFlight × partSize) whatever the folder holds.
     */
    bigFileConcurrency: number;
    bigFileBytes: number;
    /** Attempts at one checkpoint before it counts as failed (it is still retried while watching). */
    shipAttempts: number;
    retryBaseMs: number;
    retryMaxMs: number;
    /** Quiet time after a file-system event before scanning, so a burst of writes is one scan. */
    debounceMs: number;
}
/** 32 files at once: small files are latency-bound on a WAN link (bench/findings.md). */
export declare const DEFAULT_COURIER_TUNING: CourierTuning;
/**
 * Ships checkpoint folders (`<name>/` + `<name>.json`, sidecar written last) from a directory to the
 * bucket while training runs. Commit protocol, per version:
 *   1. upload every file under jobs/<job>/<name>/<version>/, hashing each in the same read pass;
 *   2. re-read the sidecar: if it changed, this version is stale and is not committed;
 *   3. write <version>.manifest.json (paths, sizes, SHA-256): the commit;
 *   4. record the D1 row (queued, retried; never blocks shipping);
 *   5. delete superseded versions (manifest first), keeping `keep` per slot.
 */
export declare class Courier {
    private readonly backends;
    private readonly catalog;
    private readonly logger;
    private readonly clock;
    private readonly tuning;
    private readonly filePool;
    private readonly bigFilePool;
    private readonly onProgress?;
    private readonly onPlanned?;
    private dir;
    private jobId;
    private keep;
    private pollEveryMs;
    private readonly slots;
    private readonly sidecarProblems;
    private readonly shipped;
    private readonly d1Queue;
    private d1Draining?;
    private d1Stopped;
    private watcher?;
    private pollTimer?;
    private debounceTimer?;
    private retryTimer?;
    private scanning?;
    private rescanRequested;
    private idleWaiters;
    /** watching: events and polls start ships; flushing: no new events, bounded attempts; stopped: nothing starts. */
    private mode;
    private d1RowsAtStart?;
    private readonly d1BehindChecks;
    constructor(backends: Backends, opts?: {
        logger?: Logger;
        clock?: () => number;
        tuning?: Partial<CourierTuning>;
        onProgress?: Progress;
        onPlanned?: Planned;
    });
    /** A courier configured from R2D1_* variables (and `.env`); warns once when D1 is not configured. */
    static fromEnv(env?: Env, opts?: ConstructorParameters<typeof Courier>[1]): Courier;
    /**
     * Starts watching `dir` in the background and returns once the first scan has run. Checkpoints
     * already committed (same sidecar) are not shipped again; those a crash left unshipped are.
     */
    watch(dir: string, opts: WatchOptions): Promise<void>;
    /** One shot: ships every complete checkpoint in `dir` not committed yet, and waits. */
    ship(dir: string, opts: Omit<WatchOptions, 'pollEvery'> & {
        timeout?: number;
    }): Promise<ShipReport>;
    /**
     * Final scan, then waits until every checkpoint seen is committed or has failed after retries
     * (at most `timeout` seconds, default 300), stops watching, and reports. Anything not committed
     * when the time is up is reported as failed.
     */
    flush(opts?: {
        timeout?: number;
    }): Promise<ShipReport>;
    /** Stops watching without waiting: in-flight uploads are aborted and nothing more is committed. */
    close(): void;
    private configure;
    private stopWatching;
    private requestScan;
    /** Scans until nothing is left to ship, then resolves: every slot committed or failed. */
    private settle;
    private hasPendingWork;
    private notifyIdle;
    private raceDeadline;
    /** One pass over the directory; concurrent requests fold into one more pass. */
    private scan;
    private scanOnce;
    /** Reads one sidecar; a new or changed one becomes the slot's wanted version. */
    private consider;
    private slotFor;
    /** What the bucket already holds for this slot, so a restart re-ships nothing already committed. */
    private learnRemote;
    /** Starts every ship that is due; schedules a wake-up for the ones backing off. */
    private pump;
    private start;
    private recordFailure;
    /** Steps 1-5 of the commit protocol for one version. */
    private shipVersion;
    /** Keeps the newest `keep` committed versions of the slot; removes older ones and abandoned uploads. */
    private deleteSuperseded;
    /** A crash between commit and D1 row leaves D1 behind: write the row now. */
    private queueD1IfBehind;
    /** The newest commit per slot waits here until D1 accepts it; shipping never waits for D1. */
    private queueD1;
    private writeD1Rows;
    private drainD1;
    private report;
}
interface LocalFile {
    path: string;
    /** Path inside the checkpoint folder, "/"-separated: the key suffix and the manifest path. */
    relative: string;
    size: number;
}
/**
 * Every regular file under `folder`. Symlinks are followed only when they stay inside the folder;
 * one pointing outside is refused (it would ship data that is not part of the checkpoint).
 */
export declare function listCheckpointFiles(folder: string): Promise<LocalFile[]>;
export declare function formatBytes(bytes: number): string;
export {};
