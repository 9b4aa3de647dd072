import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { R2d1Error } from '../src/core/errors.js';
import { FileStore } from '../src/core/fileStore.js';
import { bufferBody, readAll } from '../src/core/store.js';
import { makeTempDir } from './rig/rig.js';

/** Every file under dir, relative, '/'-separated (temp files included). */
function allFiles(dir: string, base = dir): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...allFiles(p, base));
    else out.push(p.slice(base.length + 1));
  }
  return out.sort();
}

async function rejection(p: Promise<unknown>): Promise<R2d1Error> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(R2d1Error);
    return err as R2d1Error;
  }
  throw new Error('expected a rejection');
}

describe('FileStore', () => {
  let outer: string; // the store root's parent: nothing may ever land here
  let root: string;
  let store: FileStore;

  beforeEach(async () => {
    outer = await makeTempDir('r2d1-filestore-');
    root = join(outer, 'store');
    mkdirSync(root);
    store = new FileStore(root);
  });
  afterEach(() => {
    store.close();
    rmSync(outer, { recursive: true, force: true });
  });

  it('describes itself as a file URL', () => {
    expect(store.description).toBe(`file://${root}`);
  });

  it('put / get / list / delete round trip', async () => {
    const data = Buffer.from('hello checkpoint');
    await store.put('jobs/j/slot_0/v1/checkpoint.pt', data, data.length);
    await store.put('jobs/j/slot_0/v1/config.json', bufferBody(Buffer.from('{}')), 2);

    expect(readFileSync(join(root, 'jobs/j/slot_0/v1/checkpoint.pt'), 'utf8')).toBe('hello checkpoint');
    expect((await readAll(await store.get('jobs/j/slot_0/v1/checkpoint.pt'))).toString()).toBe('hello checkpoint');
    expect((await readAll(await store.get('jobs/j/slot_0/v1/config.json'))).toString()).toBe('{}');

    const listing = await store.list('jobs/j/');
    expect(listing.prefixes).toEqual([]);
    expect(listing.objects.map((o) => [o.key, o.size])).toEqual([
      ['jobs/j/slot_0/v1/checkpoint.pt', 16],
      ['jobs/j/slot_0/v1/config.json', 2],
    ]);
    // (fs returns Dates of the outer realm, so no toBeInstanceOf(Date) here)
    expect(Math.abs(listing.objects[0].lastModified!.getTime() - Date.now())).toBeLessThan(60_000);

    await store.delete(['jobs/j/slot_0/v1/checkpoint.pt', 'jobs/j/slot_0/v1/config.json']);
    expect((await store.list('')).objects).toEqual([]);
    const err = await rejection(store.get('jobs/j/slot_0/v1/checkpoint.pt'));
    expect(err.code).toBe('NOT_FOUND');
  });

  it('put replaces an existing object', async () => {
    await store.put('k', Buffer.from('old old old'), 11);
    await store.put('k', Buffer.from('new'), 3);
    expect((await readAll(await store.get('k'))).toString()).toBe('new');
  });

  it('get of a missing key or of a "directory" is NOT_FOUND', async () => {
    await store.put('dir/file', Buffer.from('x'), 1);
    expect((await rejection(store.get('missing'))).code).toBe('NOT_FOUND');
    expect((await rejection(store.get('dir'))).code).toBe('NOT_FOUND');
  });

  it('ranged get returns bytes start…end inclusive', async () => {
    const data = Buffer.from('0123456789');
    await store.put('r', data, data.length);
    expect((await readAll(await store.get('r', { start: 2, end: 5 }))).toString()).toBe('2345');
    expect((await readAll(await store.get('r', { start: 0, end: 0 }))).toString()).toBe('0');
    expect((await readAll(await store.get('r', { start: 7, end: 9 }))).toString()).toBe('789');
  });

  it('lists with a delimiter: direct objects plus "sub-folder" prefixes', async () => {
    for (const key of ['a/b/1', 'a/b/2', 'a/c/d/3', 'a/x', 'a/y', 'ab/z', 'top']) {
      await store.put(key, Buffer.from(key), key.length);
    }
    const listing = await store.list('a/', { delimiter: '/' });
    expect(listing.objects.map((o) => o.key)).toEqual(['a/x', 'a/y']);
    expect(listing.prefixes).toEqual(['a/b/', 'a/c/']);

    const rootListing = await store.list('', { delimiter: '/' });
    expect(rootListing.objects.map((o) => o.key)).toEqual(['top']);
    expect(rootListing.prefixes).toEqual(['a/', 'ab/']);

    // a prefix that is not a whole segment
    const partial = await store.list('a');
    expect(partial.objects.map((o) => o.key)).toEqual(['a/b/1', 'a/b/2', 'a/c/d/3', 'a/x', 'a/y', 'ab/z']);
    const partialDelim = await store.list('a/b', { delimiter: '/' });
    expect(partialDelim.objects).toEqual([]);
    expect(partialDelim.prefixes).toEqual(['a/b/']);

    expect(await store.list('nothing/here/', { delimiter: '/' })).toEqual({ objects: [], prefixes: [] });
  });

  it('a put of fewer bytes than size fails, leaving no object and no temp file', async () => {
    const err = await rejection(store.put('jobs/j/short.bin', Buffer.alloc(5, 1), 10));
    expect(err.code).toBe('CHANGED');
    expect(err.retryable).toBe(true);
    expect(err.message).toContain('jobs/j/short.bin');
    expect(allFiles(root)).toEqual([]);
    expect((await store.list('')).objects).toEqual([]);
    expect((await rejection(store.get('jobs/j/short.bin'))).code).toBe('NOT_FOUND');
  });

  it('a put of more bytes than size fails too', async () => {
    await expect(store.put('long.bin', Buffer.alloc(12), 10)).rejects.toMatchObject({ code: 'CHANGED' });
    expect(allFiles(root)).toEqual([]);
  });

  it('a failed put keeps the previous object intact', async () => {
    await store.put('keep', Buffer.from('original'), 8);
    await expect(store.put('keep', Buffer.from('abc'), 8)).rejects.toMatchObject({ code: 'CHANGED' });
    expect((await readAll(await store.get('keep'))).toString()).toBe('original');
    expect(allFiles(root)).toEqual(['keep']);
  });

  it('a put whose body fails mid-way leaves no temp file', async () => {
    let reads = 0;
    const failing = {
      read: async (buffer: Buffer) => {
        if (reads++ > 0) throw new Error('disk went away');
        return buffer.fill(1);
      },
    };
    await expect(store.put('e/f', failing, 3 * 1024 * 1024)).rejects.toThrow('disk went away');
    expect(allFiles(root)).toEqual([]);
  });

  it('temp files of an in-flight put are never listed', async () => {
    writeFileSync(join(root, 'obj.r2d1-part-abcdef012345'), 'partial');
    await store.put('obj', Buffer.from('x'), 1);
    expect((await store.list('')).objects.map((o) => o.key)).toEqual(['obj']);
  });

  it.each(['../escape', 'a/../../escape', '/abs', 'a\\b', 'a//b', ''])('refuses the key %j for every operation', async (key) => {
    expect((await rejection(store.put(key, Buffer.from('x'), 1))).code).toBe('UNSAFE_KEY');
    expect((await rejection(store.get(key))).code).toBe('UNSAFE_KEY');
    expect((await rejection(store.delete([key]))).code).toBe('UNSAFE_KEY');
    expect(readdirSync(outer)).toEqual(['store']);
    expect(allFiles(root)).toEqual([]);
  });

  it('refuses a listing prefix that climbs out', async () => {
    expect((await rejection(store.list('../'))).code).toBe('UNSAFE_KEY');
  });

  it('delete prunes empty parent directories, but not the root or non-empty ones', async () => {
    await store.put('x/y/z/f1', Buffer.from('1'), 1);
    await store.put('x/y/f2', Buffer.from('2'), 1);
    await store.put('x/g', Buffer.from('3'), 1);

    await store.delete(['x/y/z/f1']);
    expect(existsSync(join(root, 'x/y/z'))).toBe(false);
    expect(existsSync(join(root, 'x/y/f2'))).toBe(true);

    await store.delete(['x/y/f2', 'x/g']);
    expect(existsSync(join(root, 'x'))).toBe(false);
    expect(statSync(root).isDirectory()).toBe(true);
    expect(readdirSync(root)).toEqual([]);
  });

  it('deleting a missing key is not an error', async () => {
    await expect(store.delete(['never/was'])).resolves.toBeUndefined();
    expect(statSync(root).isDirectory()).toBe(true);
  });

  it('prunes empty directories also when the root is given with a trailing slash (as file:///dir/ yields)', async () => {
    const slashed = new FileStore(`${root}/`);
    await slashed.put('p/q/f', Buffer.from('1'), 1);
    expect((await slashed.list('p/')).objects.map((o) => o.key)).toEqual(['p/q/f']);
    await slashed.delete(['p/q/f']);
    expect(existsSync(join(root, 'p'))).toBe(false);
  });
});
