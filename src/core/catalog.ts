import type { D1Client, CheckpointRow } from './d1.js';
import { R2d1Error, describeError } from './errors.js';
import {
  compareLatestFirst,
  compareSlotNewestFirst,
  jobPrefix,
  manifestKey,
  parseManifest,
  parseManifestKey,
  parseVersion,
  slotPrefix,
  versionPrefix,
  type Manifest,
  type VersionRef,
} from './layout.js';
import type { Logger } from './logger.js';
import { readAll, type ObjectStore } from './store.js';
import { withRetry } from './retry.js';
import { isCutShort } from './transfer.js';

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
export class Catalog {
  constructor(
    readonly store: ObjectStore,
    readonly d1: D1Client | undefined,
    private readonly logger: Logger,
  ) {}

  async slotNames(jobId: string): Promise<string[]> {
    const prefix = jobPrefix(jobId);
    const { prefixes } = await this.store.list(prefix, { delimiter: '/' });
    return prefixes.map((p) => p.slice(prefix.length, -1));
  }

  async versions(jobId: string, name: string): Promise<SlotVersions> {
    const prefix = slotPrefix(jobId, name);
    const listing = await this.store.list(prefix, { delimiter: '/' });
    const committed = listing.objects
      .map((o) => parseManifestKey(jobId, name, o.key))
      .filter((r): r is VersionRef => r !== undefined)
      .sort(compareSlotNewestFirst);
    const committedIds = new Set(committed.map((r) => r.version));
    const uncommitted = listing.prefixes
      .map((p) => parseVersion(jobId, name, p.slice(prefix.length, -1)))
      .filter((r): r is VersionRef => r !== undefined && !committedIds.has(r.version));
    return { committed, uncommitted };
  }

  async readManifest(ref: VersionRef): Promise<Manifest> {
    // A body cut mid-stream is read again (the SDK retries only until the headers arrive).
    const text = await withRetry(
      async () => {
        const body = await this.store.get(manifestKey(ref));
        try {
          return (await readAll(body)).toString('utf8');
        } catch (err) {
          throw new R2d1Error('STORE', `reading ${manifestKey(ref)} was cut: ${describeError(err)}`, { retryable: true, cause: err });
        }
      },
      { baseDelayMs: 200, retryable: isCutShort },
    );
    return parseManifest(text, ref);
  }

  /** The commit point: after this put, readers see the version. */
  async commit(manifest: Manifest, ref: VersionRef): Promise<void> {
    const body = Buffer.from(JSON.stringify(manifest, null, 1));
    await this.store.put(manifestKey(ref), body, body.length);
  }

  /** Uncommits first (manifest), then removes the files, so no reader ever sees a version lose files. */
  async deleteVersion(ref: VersionRef): Promise<void> {
    await this.store.delete([manifestKey(ref)]);
    const { objects } = await this.store.list(versionPrefix(ref));
    await this.store.delete(objects.map((o) => o.key));
  }

  /**
   * Every committed version of the job, newest (highest epoch) first, candidates only: their
   * manifests are not read. D1 is asked first; the bucket listing is the fallback and the truth.
   */
  async candidates(jobId: string): Promise<VersionRef[]> {
    const refs = new Map<string, VersionRef>();
    for (const name of await this.slotNames(jobId)) {
      for (const ref of (await this.versions(jobId, name)).committed) refs.set(manifestKey(ref), ref);
    }
    return [...refs.values()].sort(compareLatestFirst);
  }

  /** D1's rows for the job, or undefined when D1 is absent or failing (then the bucket answers). */
  async d1Rows(jobId: string): Promise<CheckpointRow[] | undefined> {
    if (!this.d1) return undefined;
    try {
      return await this.d1.listCheckpoints(jobId);
    } catch (err) {
      this.logger.warn(`D1 lookup failed, using the bucket listing instead: ${describeError(err)}`);
      return undefined;
    }
  }

  /**
   * The highest committed epoch of the job whose manifest reads and checks; undefined on a fresh
   * start. D1's rows are asked first, but a row is only taken when the bucket lists nothing newer:
   * D1 lags the bucket after a D1 outage (rows still pending) or an R2-only ship, and resuming from
   * an older checkpoint than the newest committed one would silently lose training progress.
   */
  async latest(jobId: string, opts: ReadOptions = {}): Promise<CommittedCheckpoint | undefined> {
    const rows = await this.d1Rows(jobId);
    const listed = await this.candidates(jobId);
    const fromD1 = (rows ?? [])
      .map((row) => refFromPrefix(jobId, row.name, row.r2_prefix))
      .filter((ref): ref is VersionRef => ref !== undefined && (!listed[0] || compareLatestFirst(ref, listed[0]) <= 0));
    return this.firstReadable([...fromD1, ...listed], opts);
  }

  /** The newest committed version of one slot that reads and checks. */
  async latestOfSlot(jobId: string, name: string, opts: ReadOptions = {}): Promise<CommittedCheckpoint | undefined> {
    return this.firstReadable((await this.versions(jobId, name)).committed, opts);
  }

  /** The first version (not in `skip`) whose manifest reads and checks. */
  private async firstReadable(refs: VersionRef[], opts: ReadOptions): Promise<CommittedCheckpoint | undefined> {
    for (const ref of refs) {
      if (opts.skip?.has(ref.version)) continue;
      const found = await this.tryManifest(ref, opts.problems);
      if (found) return found;
    }
    return undefined;
  }

  private async tryManifest(ref: VersionRef, problems?: R2d1Error[]): Promise<CommittedCheckpoint | undefined> {
    try {
      return { ref, manifest: await this.readManifest(ref) };
    } catch (err) {
      if (err instanceof R2d1Error && (err.code === 'NOT_FOUND' || err.code === 'VERIFY' || err.code === 'UNSAFE_KEY')) {
        if (err.code !== 'NOT_FOUND') {
          this.logger.warn(`skipping ${manifestKey(ref)}: ${describeError(err)}`);
          problems?.push(err);
        }
        return undefined;
      }
      throw err;
    }
  }
}

/** The version a D1 row's r2_prefix points at (`jobs/<job>/<name>/<version>/`). */
export function refFromPrefix(jobId: string, name: string, prefix: string): VersionRef | undefined {
  try {
    const base = slotPrefix(jobId, name);
    if (!prefix.startsWith(base) || !prefix.endsWith('/')) return undefined;
    return parseVersion(jobId, name, prefix.slice(base.length, -1));
  } catch {
    return undefined;
  }
}
