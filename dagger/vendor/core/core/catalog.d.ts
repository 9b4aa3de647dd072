import type { D1Client, CheckpointRow } from './d1.js';
import { R2d1Error } from './errors.js';
import { type Manifest, type VersionRef } from './layout.js';
import type { Logger } from './logger.js';
import { type ObjectStore } from './store.js';
export interface SlotVersions {
    /** Versions with a manifest, newest first (slot order). */
    committed: VersionRef[];
    /** Version folders without a manifest: uploads in progress, or left by a crash. */
    uncommitted: VersionRef[];
}
/** How `latest` reads: versions to pass over, and where to collect the broken manifests it skipped. */
export interface ReadOptions {
    skip?: ReadonlySet<string>;
    problems?: R2d1Error[];
}
/** A committed checkpoint as `ls` and `latest` report it. */
export interface CommittedCheckpoint {
    ref: VersionRef;
    manifest: Manifest;
}
/** The bucket-side view of jobs: versions, manifests, and `latest`. Shared by Courier and Fetcher. */
export declare class Catalog {
    readonly store: ObjectStore;
    readonly d1: D1Client | undefined;
    private readonly logger;
    constructor(store: ObjectStore, d1: D1Client | undefined, logger: Logger);
    slotNames(jobId: string): Promise<string[]>;
    versions(jobId: string, name: string): Promise<SlotVersions>;
    readManifest(ref: VersionRef): Promise<Manifest>;
    /** The commit point: after this put, readers see the version. */
    commit(manifest: Manifest, ref: VersionRef): Promise<void>;
    /** Uncommits first (manifest), then removes the files, so no reader ever sees a version lose files. */
    deleteVersion(ref: VersionRef): Promise<void>;
    /**
     * Every committed version of the job, newest (highest epoch) first, candidates only: their
     * manifests are not read. D1 is asked first; the bucket listing is the fallback and the truth.
     */
    candidates(jobId: string): Promise<VersionRef[]>;
    /** D1's rows for the job, or undefined when D1 is absent or failing (then the bucket answers). */
    d1Rows(jobId: string): Promise<CheckpointRow[] | undefined>;
    /**
     * The highest committed epoch of the job whose manifest reads and checks; undefined on a fresh
     * start. D1's rows are asked first, but a row is only taken when the bucket lists nothing newer:
     * D1 lags the bucket after a D1 outage (rows still pending) or an R2-only ship, and resuming from
     * an older checkpoint than the newest committed one would silently lose training progress.
     */
    latest(jobId: string, opts?: ReadOptions): Promise<CommittedCheckpoint | undefined>;
    /** The newest committed version of one slot that reads and checks. */
    latestOfSlot(jobId: string, name: string, opts?: ReadOptions): Promise<CommittedCheckpoint | undefined>;
    /** The first version (not in `skip`) whose manifest reads and checks. */
    private firstReadable;
    private tryManifest;
}
/** The version a D1 row's r2_prefix points at (`jobs/<job>/<name>/<version>/`). */
export declare function refFromPrefix(jobId: string, name: string, prefix: string): VersionRef | undefined;
