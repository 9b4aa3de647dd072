/**
 * Where things live in the bucket, and the manifest that commits a checkpoint version.
 *
 *   jobs/<job>/<name>/<version>/<file…>           the version's files, written first, never modified
 *   jobs/<job>/<name>/<version>.manifest.json     written last: its existence IS the commit
 *
 * <version> = e<epoch>-t<timestamp ms>-<8 hex>, so a listing alone orders versions.
 */
import { randomBytes } from 'node:crypto';
import { R2d1Error } from './errors.js';
import { checkSegment, findCollision, safeRelativePath } from './keys.js';

export const MANIFEST_FORMAT = 'r2d1-manifest/1';
const MANIFEST_SUFFIX = '.manifest.json';
const VERSION_PATTERN = /^e(\d{1,15})-t(\d{1,16})-([0-9a-f]{8})$/;

export interface ManifestFile {
  path: string;
  size: number;
  sha256: string;
}

export interface Manifest {
  format: typeof MANIFEST_FORMAT;
  jobId: string;
  name: string;
  epoch: number;
  /** The sidecar's timestamp, seconds since the epoch. */
  timestamp: number;
  metadata: Record<string, unknown>;
  version: string;
  /** Key prefix of the version's files, ending in "/". */
  prefix: string;
  /** SHA-256 of the sidecar bytes: how a restarted courier recognises what it already shipped. */
  sidecarSha256: string;
  /** The sidecar as the training code wrote it, put back beside the folder on pull. */
  sidecar: string;
  files: ManifestFile[];
  bytes: number;
  committedAt: string;
}

export interface VersionRef {
  jobId: string;
  name: string;
  version: string;
  epoch: number;
  timestampMs: number;
}

export const jobPrefix = (jobId: string) => `jobs/${checkSegment(jobId, 'job id')}/`;
export const slotPrefix = (jobId: string, name: string) => `${jobPrefix(jobId)}${checkSegment(name, 'checkpoint name')}/`;
export const versionPrefix = (ref: VersionRef) => `${slotPrefix(ref.jobId, ref.name)}${ref.version}/`;
export const manifestKey = (ref: VersionRef) => `${slotPrefix(ref.jobId, ref.name)}${ref.version}${MANIFEST_SUFFIX}`;

export function newVersion(jobId: string, name: string, epoch: number, timestamp: number): VersionRef {
  const timestampMs = Math.max(0, Math.round(timestamp * 1000));
  const version = `e${epoch}-t${timestampMs}-${randomBytes(4).toString('hex')}`;
  return { jobId, name, version, epoch, timestampMs };
}

/** The version a key names, when it is a manifest key directly under a slot prefix. */
export function parseManifestKey(jobId: string, name: string, key: string): VersionRef | undefined {
  const prefix = slotPrefix(jobId, name);
  if (!key.startsWith(prefix) || !key.endsWith(MANIFEST_SUFFIX)) return undefined;
  return parseVersion(jobId, name, key.slice(prefix.length, -MANIFEST_SUFFIX.length));
}

export function parseVersion(jobId: string, name: string, version: string): VersionRef | undefined {
  const match = VERSION_PATTERN.exec(version);
  if (!match) return undefined;
  return { jobId, name, version, epoch: Number(match[1]), timestampMs: Number(match[2]) };
}

const byVersionDesc = (a: VersionRef, b: VersionRef) => (a.version < b.version ? 1 : a.version > b.version ? -1 : 0);

/** Across a job, `latest` is the highest epoch; the later sidecar timestamp breaks ties. */
export function compareLatestFirst(a: VersionRef, b: VersionRef): number {
  return b.epoch - a.epoch || b.timestampMs - a.timestampMs || byVersionDesc(a, b);
}

/**
 * Within one slot, the newest version is the one written last (sidecar timestamp), so a run restarted
 * from scratch at a lower epoch still replaces the slot's old content.
 */
export function compareSlotNewestFirst(a: VersionRef, b: VersionRef): number {
  return b.timestampMs - a.timestampMs || b.epoch - a.epoch || byVersionDesc(a, b);
}

/** Parses and checks a manifest from the bucket: nothing in it is trusted. */
export function parseManifest(text: string, ref: VersionRef): Manifest {
  const bad = (why: string) =>
    new R2d1Error('VERIFY', `manifest ${manifestKey(ref)} is invalid: ${why}`, {
      hint: 'the version is unusable; r2d1 falls back to an older one, or re-ship the checkpoint',
    });
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw bad('not JSON');
  }
  const m = value as Partial<Manifest> | null;
  if (!m || typeof m !== 'object' || m.format !== MANIFEST_FORMAT) throw bad(`format is not ${MANIFEST_FORMAT}`);
  if (m.jobId !== ref.jobId || m.name !== ref.name || m.version !== ref.version || m.prefix !== versionPrefix(ref)) {
    throw bad('it names another job, checkpoint or version than its key');
  }
  if (!Number.isSafeInteger(m.epoch) || typeof m.timestamp !== 'number' || typeof m.sidecar !== 'string') {
    throw bad('epoch, timestamp or sidecar missing');
  }
  if (!Array.isArray(m.files)) throw bad('files is not a list');
  for (const f of m.files) {
    if (!f || typeof f.path !== 'string' || !Number.isSafeInteger(f.size) || f.size < 0 || !/^[0-9a-f]{64}$/.test(f.sha256)) {
      throw bad(`file entry ${JSON.stringify(f)} needs path, size and sha256`);
    }
    safeRelativePath(f.path, `file ${JSON.stringify(f.path)} in ${manifestKey(ref)}`);
  }
  const collision = findCollision(m.files.map((f) => f.path));
  if (collision) throw bad(`files ${JSON.stringify(collision[0])} and ${JSON.stringify(collision[1])} collide`);
  return m as Manifest;
}

export type R2Uri =
  | { kind: 'latest'; jobId: string }
  | { kind: 'checkpoint'; jobId: string; name: string }
  | { kind: 'prefix'; prefix: string };

/** `r2://jobs/<id>/latest`, `r2://jobs/<id>/<name>`, or any `r2://<prefix>`. */
export function parseR2Uri(uri: string): R2Uri {
  const badUri = (why: string) =>
    new R2d1Error('BAD_INPUT', `invalid source ${JSON.stringify(uri)}: ${why}`, {
      hint: 'use r2://jobs/<job-id>/latest, r2://jobs/<job-id>/<name>, or r2://<prefix> (for example r2://datasets/mnist)',
    });
  if (!uri.startsWith('r2://')) throw badUri('it does not start with r2://');
  const path = uri.slice('r2://'.length).replace(/\/+$/, '');
  if (path === '') throw badUri('the prefix is empty');
  try {
    safeRelativePath(path, 'source');
  } catch (err) {
    throw badUri(err instanceof R2d1Error ? err.message : String(err));
  }
  const parts = path.split('/');
  if (parts[0] === 'jobs' && parts.length > 3 && parts.at(-1) === 'latest') {
    // Most likely a job id with a "/" (a branch name): as a plain prefix it would read as a fresh start.
    throw badUri(`job id ${JSON.stringify(parts.slice(1, -1).join('/'))} contains "/"`);
  }
  if (parts[0] === 'jobs' && parts.length === 3) {
    const jobId = checkSegment(parts[1], 'job id');
    if (parts[2] === 'latest') return { kind: 'latest', jobId };
    return { kind: 'checkpoint', jobId, name: checkSegment(parts[2], 'checkpoint name') };
  }
  return { kind: 'prefix', prefix: `${path}/` };
}
