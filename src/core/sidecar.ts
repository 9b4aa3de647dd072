import { createHash } from 'node:crypto';
import { R2d1Error } from './errors.js';
import { checkSegment, safeRelativePath } from './keys.js';

/** The seed's sidecar schema: `{name, epoch, timestamp, files, metadata}`; written LAST. */
export interface Sidecar {
  name: string;
  epoch: number;
  /** Seconds since the Unix epoch. */
  timestamp: number;
  files?: string[];
  metadata: Record<string, unknown>;
}

export const sha256 = (data: string | Buffer) => createHash('sha256').update(data).digest('hex');

/**
 * Checks a sidecar read from `<name>.json`. `fallbackTimestamp` (the file's mtime) stands in
 * for a missing timestamp. Throws a SIDECAR error naming the file and the expected shape.
 */
export function parseSidecar(text: string, fileName: string, fallbackTimestamp: number): Sidecar {
  const slot = fileName.replace(/\.json$/, '');
  const bad = (why: string) =>
    new R2d1Error('SIDECAR', `sidecar ${fileName} is not usable: ${why}`, {
      hint: `write it last, as JSON like {"name": "${slot}", "epoch": 42, "timestamp": 1748123456.7, "files": ["checkpoint.pt"], "metadata": {}}`,
      retryable: true,
    });
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw bad(text.trim() === '' ? 'it is empty (still being written?)' : 'it is not valid JSON (still being written?)');
  }
  if (!value || typeof value !== 'object' || Array.isArray(value)) throw bad('it is not a JSON object');
  const v = value as Record<string, unknown>;
  const name = v.name ?? slot;
  if (typeof name !== 'string') throw bad('"name" is not a string');
  if (name !== slot) throw bad(`"name" is ${JSON.stringify(name)} but the file is ${fileName}; they must match`);
  checkSegment(name, 'checkpoint name');
  if (typeof v.epoch !== 'number' || !Number.isSafeInteger(v.epoch) || v.epoch < 0) {
    throw bad('"epoch" must be a non-negative integer');
  }
  const timestamp = v.timestamp ?? fallbackTimestamp;
  if (typeof timestamp !== 'number' || !Number.isFinite(timestamp) || timestamp < 0) throw bad('"timestamp" must be seconds since 1970');
  let files: string[] | undefined;
  if (v.files !== undefined) {
    if (!Array.isArray(v.files) || v.files.some((f) => typeof f !== 'string')) throw bad('"files" must be a list of file names');
    files = (v.files as string[]).map((f) => safeRelativePath(f, `file listed in ${fileName}`));
  }
  const metadata = v.metadata ?? {};
  if (!metadata || typeof metadata !== 'object' || Array.isArray(metadata)) throw bad('"metadata" must be a JSON object');
  return { name, epoch: v.epoch, timestamp, files, metadata: metadata as Record<string, unknown> };
}
