import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, readdir, rename, rm, rmdir, stat } from 'node:fs/promises';
import { dirname, join, relative, resolve, sep } from 'node:path';
import type { Readable } from 'node:stream';
import { R2d1Error } from './errors.js';
import { localPathUnder } from './keys.js';
import type { Listing, ObjectInfo, ObjectStore, SequentialBody } from './store.js';

const TEMP_MARK = '.r2d1-part-';
const COPY_BUFFER_BYTES = 1024 * 1024;

/**
 * A directory standing in for a bucket (R2D1_STORE=file:///dir): for the demo, for tests, and for
 * shared filesystems. Objects are written to a temporary name and renamed, so none is ever partial.
 */
export class FileStore implements ObjectStore {
  readonly description: string;
  private readonly root: string;

  constructor(root: string) {
    this.root = resolve(root); // no trailing slash: keys are judged against root + sep
    this.description = `file://${this.root}`;
  }

  private path(key: string): string {
    return localPathUnder(this.root, key, 'object key');
  }

  async put(key: string, body: SequentialBody | Buffer, size: number, opts: { signal?: AbortSignal } = {}): Promise<void> {
    const target = this.path(key);
    await mkdir(dirname(target), { recursive: true });
    const temp = `${target}${TEMP_MARK}${randomBytes(6).toString('hex')}`;
    const file = await open(temp, 'w');
    try {
      if (Buffer.isBuffer(body)) {
        await file.writeFile(body, { signal: opts.signal });
      } else {
        const buffer = Buffer.allocUnsafe(Math.min(size, COPY_BUFFER_BYTES));
        for (let done = 0; done < size; ) {
          opts.signal?.throwIfAborted();
          const data = await body.read(buffer.subarray(0, Math.min(buffer.length, size - done)));
          await file.write(data, 0, data.length, done);
          done += data.length;
        }
      }
      await file.close();
      const written = (await stat(temp)).size;
      if (written !== size) {
        throw new R2d1Error('CHANGED', `${key}: expected ${size} bytes, got ${written}`, {
          hint: 'the source changed while it was read',
          retryable: true,
        });
      }
      await rename(temp, target);
    } catch (err) {
      await file.close().catch(() => undefined);
      await rm(temp, { force: true });
      throw err;
    }
  }

  async get(key: string, range?: { start: number; end: number }): Promise<Readable> {
    const path = this.path(key);
    try {
      if (!(await stat(path)).isFile()) throw new Error('not a file');
    } catch {
      throw new R2d1Error('NOT_FOUND', `${this.description}/${key} does not exist`);
    }
    return createReadStream(path, range ? { start: range.start, end: range.end } : {});
  }

  async list(prefix: string, opts: { delimiter?: string } = {}): Promise<Listing> {
    const objects: ObjectInfo[] = [];
    const prefixes = new Set<string>();
    // Walk only the directory the prefix names, not the whole store.
    const dirPart = prefix.slice(0, prefix.lastIndexOf('/'));
    const start = dirPart ? this.path(dirPart) : this.root;
    await this.walk(start, async (path) => {
      const key = relative(this.root, path).split(sep).join('/');
      if (!key.startsWith(prefix) || key.includes(TEMP_MARK)) return;
      const rest = key.slice(prefix.length);
      const cut = opts.delimiter ? rest.indexOf(opts.delimiter) : -1;
      if (cut >= 0) {
        prefixes.add(prefix + rest.slice(0, cut + 1));
        return;
      }
      const info = await stat(path);
      objects.push({ key, size: info.size, lastModified: info.mtime });
    });
    objects.sort((a, b) => (a.key < b.key ? -1 : 1));
    return { objects, prefixes: [...prefixes].sort() };
  }

  private async walk(dir: string, visit: (path: string) => Promise<void>): Promise<void> {
    let entries;
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const entry of entries) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) await this.walk(path, visit);
      else if (entry.isFile()) await visit(path);
    }
  }

  async delete(keys: readonly string[]): Promise<void> {
    await Promise.all(keys.map((key) => rm(this.path(key), { force: true })));
    // Like a bucket, leave no empty "folders" behind.
    const parents = new Set(keys.map((key) => dirname(this.path(key))));
    for (const dir of [...parents].sort((a, b) => b.length - a.length)) {
      for (let d = dir; d.startsWith(this.root + sep); d = dirname(d)) {
        if (!(await rmdir(d).then(() => true, () => false))) break;
      }
    }
  }

  close(): void {}
}
