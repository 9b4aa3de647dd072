import { watch as watchDir, type FSWatcher } from 'node:fs';
import { lstat, mkdir, readdir, readFile, realpath, stat } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import { Catalog } from './catalog.js';
import { loadConfig, withDotEnv, type Env } from './config.js';
import { R2d1Error, describeError, isRetryable } from './errors.js';
import { manifestKey, newVersion, versionPrefix, MANIFEST_FORMAT, type Manifest, type VersionRef } from './layout.js';
import { consoleLogger, type Logger } from './logger.js';
import { Pool, forEachAbortable } from './pool.js';
import { backoffDelay } from './retry.js';
import { parseSidecar, sha256, type Sidecar } from './sidecar.js';
import { openBackends, type Backends } from './backends.js';
import { uploadFile, type Planned, type Progress } from './transfer.js';

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

/** Longest a flush waits for D1 rows once every checkpoint is committed. */
const D1_GRACE_MS = 5_000;

/** 32 files at once: small files are latency-bound on a WAN link (bench/findings.md). */
export const DEFAULT_COURIER_TUNING: CourierTuning = {
  fileConcurrency: 32,
  bigFileConcurrency: 2,
  bigFileBytes: 4 * 1024 * 1024,
  shipAttempts: 5,
  retryBaseMs: 500,
  retryMaxMs: 30_000,
  debounceMs: 50,
};

/** A complete checkpoint on disk: its sidecar bytes are its identity. */
interface Candidate {
  sidecarHash: string;
  sidecarText: string;
  sidecar: Sidecar;
}

interface Slot {
  name: string;
  /** The newest complete version seen on disk. */
  wanted?: Candidate;
  /** Sidecar hash of the newest committed version (remote truth, learned once then kept). */
  committedHash?: string;
  remoteChecked: boolean;
  active?: { hash: string; controller: AbortController; done: Promise<void> };
  attempts: number;
  lastError?: string;
  /** Settled as not shipped: its folder is gone, or (while flushing) it ran out of attempts. */
  failed: boolean;
  retryAt: number;
}

/**
 * Ships checkpoint folders (`<name>/` + `<name>.json`, sidecar written last) from a directory to the
 * bucket while training runs. Commit protocol, per version:
 *   1. upload every file under jobs/<job>/<name>/<version>/, hashing each in the same read pass;
 *   2. re-read the sidecar: if it changed, this version is stale and is not committed;
 *   3. write <version>.manifest.json (paths, sizes, SHA-256): the commit;
 *   4. record the D1 row (queued, retried; never blocks shipping);
 *   5. delete superseded versions (manifest first), keeping `keep` per slot.
 */
export class Courier {
  private readonly catalog: Catalog;
  private readonly logger: Logger;
  private readonly clock: () => number;
  private readonly tuning: CourierTuning;
  private readonly filePool: Pool;
  private readonly bigFilePool: Pool;
  private readonly onProgress?: Progress;
  private readonly onPlanned?: Planned;

  private dir = '';
  private jobId = '';
  private keep = 1;
  private pollEveryMs = 30_000;
  private readonly slots = new Map<string, Slot>();
  private readonly sidecarProblems = new Map<string, string>();
  private readonly shipped: ShippedCheckpoint[] = [];
  private readonly d1Queue = new Map<string, Manifest>();
  private d1Draining?: Promise<void>;
  private d1Stopped = false;
  private watcher?: FSWatcher;
  private pollTimer?: NodeJS.Timeout;
  private debounceTimer?: NodeJS.Timeout;
  private retryTimer?: NodeJS.Timeout;
  private scanning?: Promise<void>;
  private rescanRequested = false;
  private idleWaiters: (() => void)[] = [];
  /** watching: events and polls start ships; flushing: no new events, bounded attempts; stopped: nothing starts. */
  private mode: 'idle' | 'watching' | 'flushing' | 'stopped' = 'idle';
  private d1RowsAtStart?: ReturnType<Catalog['d1Rows']>;
  private readonly d1BehindChecks: Promise<void>[] = [];

  constructor(
    private readonly backends: Backends,
    opts: { logger?: Logger; clock?: () => number; tuning?: Partial<CourierTuning>; onProgress?: Progress; onPlanned?: Planned } = {},
  ) {
    this.logger = opts.logger ?? consoleLogger();
    this.clock = opts.clock ?? Date.now;
    this.tuning = { ...DEFAULT_COURIER_TUNING, ...opts.tuning };
    this.filePool = new Pool(this.tuning.fileConcurrency);
    this.bigFilePool = new Pool(this.tuning.bigFileConcurrency);
    this.onProgress = opts.onProgress;
    this.onPlanned = opts.onPlanned;
    this.catalog = new Catalog(backends.store, backends.d1, this.logger);
  }

  /** A courier configured from R2D1_* variables (and `.env`); warns once when D1 is not configured. */
  static fromEnv(env: Env = process.env, opts: ConstructorParameters<typeof Courier>[1] = {}): Courier {
    const logger = opts.logger ?? consoleLogger();
    return new Courier(openBackends(loadConfig(withDotEnv(env)), logger), { ...opts, logger });
  }

  /**
   * Starts watching `dir` in the background and returns once the first scan has run. Checkpoints
   * already committed (same sidecar) are not shipped again; those a crash left unshipped are.
   */
  async watch(dir: string, opts: WatchOptions): Promise<void> {
    if (this.mode !== 'idle') throw new R2d1Error('BAD_INPUT', 'this courier has already been started', { hint: 'create one Courier per watched directory' });
    this.configure(dir, opts);
    await mkdir(dir, { recursive: true });
    this.mode = 'watching';
    try {
      this.watcher = watchDir(dir, (_event, file) => {
        if (!file || String(file).endsWith('.json')) this.requestScan(this.tuning.debounceMs);
      });
      this.watcher.on('error', (err) => this.logger.warn(`file-system events stopped (${describeError(err)}); polling every ${this.pollEveryMs / 1000}s`));
    } catch (err) {
      this.logger.warn(`no file-system events for ${dir} (${describeError(err)}); polling every ${this.pollEveryMs / 1000}s`);
    }
    this.pollTimer = setInterval(() => this.requestScan(0), this.pollEveryMs);
    this.pollTimer.unref();
    this.logger.info(`watching ${dir} for job ${this.jobId} → ${this.backends.store.description}`);
    await this.scan();
  }

  /** One shot: ships every complete checkpoint in `dir` not committed yet, and waits. */
  async ship(dir: string, opts: Omit<WatchOptions, 'pollEvery'> & { timeout?: number }): Promise<ShipReport> {
    this.configure(dir, opts);
    return this.flush({ timeout: opts.timeout });
  }

  /**
   * Final scan, then waits until every checkpoint seen is committed or has failed after retries
   * (at most `timeout` seconds, default 300), stops watching, and reports. Anything not committed
   * when the time is up is reported as failed.
   */
  async flush(opts: { timeout?: number } = {}): Promise<ShipReport> {
    const timeout = opts.timeout ?? 300;
    const deadline = this.clock() + timeout * 1000;
    this.stopWatching();
    this.mode = 'flushing';
    // Whatever was backing off while watching gets a fresh round of attempts now (the final scan
    // marks again what is gone from disk).
    for (const slot of this.slots.values()) Object.assign(slot, { failed: false, attempts: 0, retryAt: 0 });
    const timedOut = await this.raceDeadline(this.settle(), deadline);
    this.mode = 'stopped';
    for (const slot of this.slots.values()) slot.active?.controller.abort(new R2d1Error('TIMEOUT', 'flush timed out'));
    clearTimeout(this.retryTimer);
    // D1 rows get what is left of the timeout, at least a short grace, at most D1_GRACE_MS: the data is
    // committed already, and a row still pending is reported, then written by the next courier.
    const now = this.clock();
    const d1Work = (async () => {
      await Promise.allSettled(this.d1BehindChecks);
      await this.drainD1();
    })();
    await this.raceDeadline(d1Work, Math.min(Math.max(deadline, now + 2000), now + D1_GRACE_MS));
    this.d1Stopped = true;
    return this.report(timedOut ? timeout : undefined);
  }

  /** Stops watching without waiting: in-flight uploads are aborted and nothing more is committed. */
  close(): void {
    this.stopWatching();
    this.mode = 'stopped';
    this.d1Stopped = true;
    clearTimeout(this.retryTimer);
    for (const slot of this.slots.values()) slot.active?.controller.abort(new R2d1Error('TIMEOUT', 'courier closed'));
    this.backends.store.close();
  }

  private configure(dir: string, opts: WatchOptions): void {
    this.dir = dir;
    this.jobId = opts.jobId;
    versionPrefix(newVersion(opts.jobId, 'check', 0, 0)); // validates the job id early
    this.keep = Math.max(1, Math.floor(opts.keep ?? 1));
    this.pollEveryMs = Math.max(0.1, opts.pollEvery ?? 30) * 1000;
  }

  private stopWatching(): void {
    this.watcher?.close();
    this.watcher = undefined;
    clearInterval(this.pollTimer);
    this.pollTimer = undefined;
    clearTimeout(this.debounceTimer);
  }

  private requestScan(delayMs: number): void {
    if (this.mode !== 'watching') return;
    clearTimeout(this.debounceTimer);
    this.debounceTimer = setTimeout(() => void this.scan().catch((err) => this.logger.warn(`scan failed: ${describeError(err)}`)), delayMs);
  }

  /** Scans until nothing is left to ship, then resolves: every slot committed or failed. */
  private async settle(): Promise<void> {
    await this.scan();
    while (this.hasPendingWork()) {
      await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
    }
  }

  private hasPendingWork(): boolean {
    for (const slot of this.slots.values()) {
      if (slot.active) return true;
      if (slot.wanted && slot.wanted.sidecarHash !== slot.committedHash && !slot.failed) return true;
    }
    return false;
  }

  private notifyIdle(): void {
    if (this.hasPendingWork()) return;
    for (const wake of this.idleWaiters.splice(0)) wake();
  }

  private async raceDeadline(work: Promise<void>, deadline: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), Math.max(0, deadline - this.clock()))));
    try {
      return await Promise.race([work.then(() => false), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** One pass over the directory; concurrent requests fold into one more pass. */
  private scan(): Promise<void> {
    if (this.scanning) {
      this.rescanRequested = true;
      return this.scanning;
    }
    this.scanning = (async () => {
      do {
        this.rescanRequested = false;
        await this.scanOnce();
      } while (this.rescanRequested);
    })().finally(() => {
      this.scanning = undefined;
      this.notifyIdle();
    });
    return this.scanning;
  }

  private async scanOnce(): Promise<void> {
    let entries;
    try {
      entries = await readdir(this.dir, { withFileTypes: true });
    } catch (err) {
      this.logger.warn(`cannot read ${this.dir}: ${describeError(err)}`);
      return;
    }
    const dirs = new Set(entries.filter((e) => e.isDirectory()).map((e) => e.name));
    const onDisk = new Set<string>();
    for (const name of this.sidecarProblems.keys()) if (!dirs.has(name)) this.sidecarProblems.delete(name);
    for (const entry of entries) {
      if (!entry.isFile() || !entry.name.endsWith('.json') || entry.name.startsWith('.')) continue;
      const name = entry.name.slice(0, -'.json'.length);
      if (!dirs.has(name)) continue; // a sidecar without its folder is not a checkpoint
      onDisk.add(name);
      await this.consider(name, entry.name);
    }
    for (const [name, slot] of this.slots) {
      if (!onDisk.has(name) && slot.wanted && slot.wanted.sidecarHash !== slot.committedHash && !slot.active && !slot.failed) {
        slot.failed = true;
        slot.lastError = `${name}/ or ${name}.json was deleted before it was shipped`;
      }
    }
    this.pump();
  }

  /** Reads one sidecar; a new or changed one becomes the slot's wanted version. */
  private async consider(name: string, fileName: string): Promise<void> {
    const path = join(this.dir, fileName);
    let text: string;
    let mtime: number;
    try {
      text = await readFile(path, 'utf8');
      mtime = (await stat(path)).mtimeMs / 1000;
    } catch {
      return; // deleted or replaced between readdir and read; the next scan sees the outcome
    }
    const hash = sha256(text);
    const slot = this.slotFor(name);
    if (hash === slot.wanted?.sidecarHash || hash === slot.committedHash) this.sidecarProblems.delete(name);
    if (hash === slot.wanted?.sidecarHash) return;
    if (hash === slot.committedHash) {
      // The disk went back to what is committed: nothing newer to ship.
      slot.active?.controller.abort(new R2d1Error('SUPERSEDED', `${name}.json went back to its committed version`));
      slot.wanted = undefined;
      return;
    }
    let sidecar: Sidecar;
    try {
      sidecar = parseSidecar(text, fileName, mtime);
    } catch (err) {
      const message = describeError(err);
      if (this.sidecarProblems.get(name) !== message) this.logger.warn(`${message}; retrying on the next scan`);
      this.sidecarProblems.set(name, message);
      return;
    }
    this.sidecarProblems.delete(name);
    if (!slot.remoteChecked) await this.learnRemote(slot);
    if (hash === slot.committedHash) {
      this.logger.info(`${name} epoch ${sidecar.epoch} is already committed; not shipping it again`);
      return;
    }
    if (slot.active && slot.active.hash !== hash) {
      this.logger.info(`${name} was rewritten (epoch ${sidecar.epoch}) while shipping; the older version is dropped`);
      slot.active.controller.abort(new R2d1Error('SUPERSEDED', `${name} was rewritten while it was shipped`));
    }
    Object.assign(slot, { wanted: { sidecarHash: hash, sidecarText: text, sidecar }, attempts: 0, failed: false, retryAt: 0, lastError: undefined });
  }

  private slotFor(name: string): Slot {
    let slot = this.slots.get(name);
    if (!slot) {
      slot = { name, remoteChecked: false, attempts: 0, failed: false, retryAt: 0 };
      this.slots.set(name, slot);
    }
    return slot;
  }

  /** What the bucket already holds for this slot, so a restart re-ships nothing already committed. */
  private async learnRemote(slot: Slot): Promise<void> {
    try {
      const found = await this.catalog.latestOfSlot(this.jobId, slot.name);
      slot.committedHash = found?.manifest.sidecarSha256;
      slot.remoteChecked = true;
      if (found) this.queueD1IfBehind(found.manifest);
    } catch (err) {
      // Unknown remote state: ship anyway (at worst a duplicate upload); ask again next time.
      this.logger.warn(`cannot check what is committed for ${slot.name}: ${describeError(err)}`);
    }
  }

  /** Starts every ship that is due; schedules a wake-up for the ones backing off. */
  private pump(): void {
    if (this.mode === 'stopped' || this.mode === 'idle') return;
    const now = this.clock();
    let nextRetry = Infinity;
    for (const slot of this.slots.values()) {
      const wanted = slot.wanted;
      if (!wanted || slot.active || slot.failed || wanted.sidecarHash === slot.committedHash) continue;
      if (slot.retryAt > now) {
        nextRetry = Math.min(nextRetry, slot.retryAt);
        continue;
      }
      this.start(slot, wanted);
    }
    clearTimeout(this.retryTimer);
    if (nextRetry < Infinity) {
      this.retryTimer = setTimeout(() => this.pump(), nextRetry - now);
      this.retryTimer.unref();
    }
    this.notifyIdle();
  }

  private start(slot: Slot, wanted: Candidate): void {
    const controller = new AbortController();
    const started = this.clock();
    const done = this.shipVersion(slot.name, wanted, controller.signal)
      .then((shipped) => {
        slot.committedHash = wanted.sidecarHash;
        slot.lastError = undefined;
        slot.attempts = 0;
        shipped.seconds = (this.clock() - started) / 1000;
        this.shipped.push(shipped);
        this.logger.info(`committed ${shipped.name} epoch ${shipped.epoch}: ${shipped.files} files, ${formatBytes(shipped.bytes)} in ${shipped.seconds.toFixed(1)}s`);
      })
      .catch((err) => this.recordFailure(slot, wanted, err))
      .finally(() => {
        slot.active = undefined;
        this.pump();
      });
    slot.active = { hash: wanted.sidecarHash, controller, done };
  }

  private recordFailure(slot: Slot, wanted: Candidate, err: unknown): void {
    if (slot.wanted !== wanted) return; // superseded: the newer version is what counts now
    const code = err instanceof R2d1Error ? err.code : undefined;
    if (code === 'TIMEOUT') {
      slot.failed = true;
      return;
    }
    if (code === 'SUPERSEDED') {
      this.requestScan(0); // the sidecar moved on: pick up the new one
      if (this.mode === 'flushing') void this.scan();
      return;
    }
    slot.attempts++;
    slot.lastError = describeError(err);
    const exhausted = !isRetryable(err) || slot.attempts >= this.tuning.shipAttempts;
    const what = `${slot.name} epoch ${wanted.sidecar.epoch}`;
    if (exhausted && this.mode === 'flushing') {
      slot.failed = true;
      this.logger.error(`${what} not shipped after ${slot.attempts} attempt(s): ${slot.lastError}`);
      return;
    }
    // While watching nothing is given up: past the attempts, retry at the poll interval (R2 may come back).
    const delay = exhausted
      ? this.pollEveryMs
      : backoffDelay(slot.attempts - 1, { baseDelayMs: this.tuning.retryBaseMs, maxDelayMs: this.tuning.retryMaxMs });
    slot.retryAt = this.clock() + delay;
    const log = exhausted ? this.logger.error : this.logger.warn;
    log.call(this.logger, `${what}: ${slot.lastError}; retry ${slot.attempts} in ${(delay / 1000).toFixed(1)}s`);
  }

  /** Steps 1-5 of the commit protocol for one version. */
  private async shipVersion(name: string, wanted: Candidate, signal: AbortSignal): Promise<ShippedCheckpoint> {
    const { sidecar } = wanted;
    const folder = join(this.dir, name);
    const files = await listCheckpointFiles(folder);
    this.onPlanned?.(files.reduce((sum, f) => sum + f.size, 0));
    const onDisk = new Set(files.map((file) => file.relative.normalize('NFC')));
    const missing = (sidecar.files ?? []).filter((f) => !onDisk.has(f)); // parseSidecar gives NFC names
    if (missing.length > 0) {
      throw new R2d1Error('CHANGED', `${name}.json lists ${missing.map((m) => JSON.stringify(m)).join(', ')} but ${name}/ does not contain it`, {
        hint: 'write every file of the checkpoint before its sidecar',
        retryable: true,
      });
    }
    const ref = newVersion(this.jobId, name, sidecar.epoch, sidecar.timestamp);
    const prefix = versionPrefix(ref);
    const uploaded: Manifest['files'] = [];
    try {
      await forEachAbortable(files, this.filePool, signal, async (file, fileSignal) => {
        const upload = () =>
          uploadFile(this.backends.store, prefix + file.relative, file.path, { signal: fileSignal, onProgress: this.onProgress });
        const { size, sha256: hash } = file.size > this.tuning.bigFileBytes ? await this.bigFilePool.run(upload) : await upload();
        uploaded.push({ path: file.relative, size, sha256: hash });
      });
      signal.throwIfAborted();
      const now = await readFile(join(this.dir, `${name}.json`), 'utf8').catch(() => '');
      if (sha256(now) !== wanted.sidecarHash) {
        throw new R2d1Error('SUPERSEDED', `${name}.json changed while ${name} was shipped; this version is not committed`, { retryable: true });
      }
      uploaded.sort((a, b) => (a.path < b.path ? -1 : 1));
      const manifest: Manifest = {
        format: MANIFEST_FORMAT,
        jobId: this.jobId,
        name,
        epoch: sidecar.epoch,
        timestamp: sidecar.timestamp,
        metadata: sidecar.metadata,
        version: ref.version,
        prefix,
        sidecarSha256: wanted.sidecarHash,
        sidecar: wanted.sidecarText,
        files: uploaded,
        bytes: uploaded.reduce((sum, f) => sum + f.size, 0),
        committedAt: new Date(this.clock()).toISOString(),
      };
      await this.catalog.commit(manifest, ref);
      this.queueD1(manifest);
      await this.deleteSuperseded(ref).catch((err) => this.logger.warn(`could not delete superseded versions of ${name}: ${describeError(err)}`));
      return { name, epoch: sidecar.epoch, bytes: manifest.bytes, files: uploaded.length, key: prefix, seconds: 0 };
    } catch (err) {
      // Nothing was committed: remove what this attempt uploaded (the next GC sweeps what this misses).
      await this.catalog.deleteVersion(ref).catch(() => undefined);
      throw signal.aborted && signal.reason instanceof R2d1Error ? signal.reason : err;
    }
  }

  /** Keeps the newest `keep` committed versions of the slot; removes older ones and abandoned uploads. */
  private async deleteSuperseded(current: VersionRef): Promise<void> {
    const { committed, uncommitted } = await this.catalog.versions(this.jobId, current.name);
    const keepIds = new Set(committed.slice(0, this.keep).map((r) => r.version));
    keepIds.add(current.version);
    const stale = [
      ...committed.filter((r) => !keepIds.has(r.version)),
      // Manifest-less folders older than this commit are aborted attempts, never to be committed.
      ...uncommitted.filter((r) => r.timestampMs <= current.timestampMs && r.version !== current.version),
    ];
    for (const ref of stale) {
      await this.catalog.deleteVersion(ref);
      this.logger.debug(`deleted superseded ${manifestKey(ref)}`);
    }
  }

  /** A crash between commit and D1 row leaves D1 behind: write the row now. */
  private queueD1IfBehind(manifest: Manifest): void {
    if (!this.backends.d1) return;
    this.d1RowsAtStart ??= this.catalog.d1Rows(this.jobId);
    this.d1BehindChecks.push(
      this.d1RowsAtStart.then((rows) => {
        const row = rows?.find((r) => r.name === manifest.name);
        if (rows && (!row || row.r2_prefix !== manifest.prefix) && (!row || row.timestamp <= manifest.timestamp)) this.queueD1(manifest);
      }),
    );
  }

  /** The newest commit per slot waits here until D1 accepts it; shipping never waits for D1. */
  private queueD1(manifest: Manifest): void {
    if (!this.backends.d1) return;
    this.d1Queue.set(manifest.name, manifest);
    this.d1Draining ??= this.writeD1Rows().finally(() => (this.d1Draining = undefined));
  }

  private async writeD1Rows(): Promise<void> {
    const d1 = this.backends.d1!;
    let failures = 0;
    while (this.d1Queue.size > 0) {
      const [name, manifest] = this.d1Queue.entries().next().value as [string, Manifest];
      try {
        await d1.recordCheckpoint({
          job_id: manifest.jobId,
          name: manifest.name,
          epoch: manifest.epoch,
          timestamp: manifest.timestamp,
          r2_prefix: manifest.prefix,
          metadata: JSON.stringify(manifest.metadata),
        });
        if (this.d1Queue.get(name) === manifest) this.d1Queue.delete(name);
        failures = 0;
      } catch (err) {
        failures++;
        const delay = backoffDelay(failures, { baseDelayMs: this.tuning.retryBaseMs, maxDelayMs: this.tuning.retryMaxMs });
        this.logger.warn(`D1 row for ${name} not written yet (${describeError(err)}); retrying in ${(delay / 1000).toFixed(1)}s`);
        await new Promise((resolve) => setTimeout(resolve, delay).unref());
        if (this.d1Stopped) return;
      }
    }
  }

  private async drainD1(): Promise<void> {
    while (this.d1Draining) await this.d1Draining;
  }

  private report(timedOutAfter?: number): ShipReport {
    const failed: FailedCheckpoint[] = [];
    for (const slot of this.slots.values()) {
      if (!slot.wanted || slot.wanted.sidecarHash === slot.committedHash) continue;
      const reason = timedOutAfter !== undefined && !slot.lastError?.includes('deleted')
        ? `flush timed out after ${timedOutAfter}s${slot.lastError ? ` (last error: ${slot.lastError})` : ''}`
        : (slot.lastError ?? 'not shipped');
      failed.push({ name: slot.name, epoch: slot.wanted.sidecar.epoch, reason });
    }
    for (const [name, problem] of this.sidecarProblems) failed.push({ name, reason: problem });
    return { ok: failed.length === 0, shipped: [...this.shipped], failed, d1Pending: [...this.d1Queue.keys()] };
  }
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
export async function listCheckpointFiles(folder: string): Promise<LocalFile[]> {
  const root = await realpath(folder).catch((err) => {
    throw new R2d1Error('CHANGED', `checkpoint folder ${folder} is gone (${describeError(err)})`, {
      hint: 'keep the folder until r2d1 has shipped it',
      retryable: true,
    });
  });
  const files: LocalFile[] = [];
  const walk = async (dir: string) => {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      let info = await lstat(path);
      if (info.isSymbolicLink()) {
        const target = await realpath(path).catch(() => '');
        const linkDir = await realpath(dir);
        if (target && (target === linkDir || linkDir.startsWith(target + sep))) {
          throw new R2d1Error('SIDECAR', `${relative(folder, path).split(sep).join('/')} in ${folder} is a symlink loop (it points back to a folder that contains it)`, {
            hint: 'remove the link',
          });
        }
        if (!target || (target !== root && !target.startsWith(root + sep))) {
          throw new R2d1Error('SIDECAR', `${path} is a symlink that points outside the checkpoint folder`, {
            hint: 'copy the file into the folder instead of linking to it',
          });
        }
        info = await stat(path);
      }
      if (info.isDirectory()) await walk(path);
      else if (info.isFile()) files.push({ path, relative: relative(folder, path).split(sep).join('/'), size: info.size });
    }
  };
  await walk(folder);
  return files.sort((a, b) => (a.relative < b.relative ? -1 : 1));
}

export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}
