import { resolve, sep } from 'node:path';
import { R2d1Error } from './errors.js';

/**
 * A relative path from a remote listing or manifest, checked before it touches the disk:
 * no `..`, no absolute paths, no backslashes or control characters, no empty segments.
 * Returns the path NFC-normalised, the form that collisions are judged in.
 */
export function safeRelativePath(path: string, what: string): string {
  const refuse = (why: string) =>
    new R2d1Error('UNSAFE_KEY', `refusing ${what} ${JSON.stringify(path)}: ${why}`, {
      hint: 'the remote object name would land outside the destination; remove or rename that object in the bucket',
    });
  if (path.length === 0) throw refuse('it is empty');
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f\\]/.test(path)) throw refuse('it contains a backslash or a control character');
  if (path.startsWith('/') || /^[A-Za-z]:/.test(path)) throw refuse('it is an absolute path');
  const segments = path.split('/');
  if (segments.some((s) => s === '..')) throw refuse('it climbs out with ..');
  if (segments.some((s) => s === '' || s === '.')) throw refuse('it has an empty or . segment');
  return path.normalize('NFC');
}

/** The local path for `relative` under `root`, refusing anything that would resolve outside it. */
export function localPathUnder(root: string, relative: string, what: string): string {
  const safe = safeRelativePath(relative, what);
  const base = resolve(root);
  const target = resolve(base, ...safe.split('/'));
  if (!target.startsWith(base + sep)) {
    throw new R2d1Error('UNSAFE_KEY', `refusing ${what} ${JSON.stringify(relative)}: it resolves outside ${base}`, {
      hint: 'remove or rename that object in the bucket',
    });
  }
  return target;
}

/** Job ids and slot names become one key segment each. */
export function checkSegment(value: string, what: string): string {
  if (
    value.length === 0 ||
    value.length > 200 ||
    value === '.' ||
    value === '..' ||
    value.startsWith('.') ||
    // eslint-disable-next-line no-control-regex
    /[/\\\u0000-\u001f\u007f]/.test(value)
  ) {
    throw new R2d1Error('BAD_INPUT', `invalid ${what} ${JSON.stringify(value)}`, {
      hint: `a ${what} is 1-200 characters without "/", "\\" or control characters, and does not start with "."`,
    });
  }
  return value;
}

/** Two names that normalise to the same path would overwrite each other on disk. */
export function findCollision(paths: readonly string[]): [string, string] | undefined {
  const seen = new Map<string, string>();
  for (const path of paths) {
    const key = path.normalize('NFC');
    const other = seen.get(key);
    if (other !== undefined) return [other, path];
    seen.set(key, path);
  }
  const all = new Set(seen.keys());
  for (const path of all) {
    const parts = path.split('/');
    for (let i = 1; i < parts.length; i++) {
      const parent = parts.slice(0, i).join('/');
      if (all.has(parent)) return [parent, path];
    }
  }
  return undefined;
}
