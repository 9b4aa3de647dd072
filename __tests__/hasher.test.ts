/**
 * The hash worker behind ranged downloads: it follows a file as its front is written, and a file it
 * cannot read fails the digest with a message that names it.
 */
import { afterAll, describe, expect, it } from '@jest/globals';
import { createHash } from 'node:crypto';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FollowingHash } from '../src/core/hasher.js';
import { randomFile } from './helpers/checkpoints.js';

const dirs: string[] = [];
afterAll(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

async function tempFile(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'r2d1-hasher-'));
  dirs.push(dir);
  return join(dir, 'file.bin');
}

describe('FollowingHash', () => {
  it('hashes a file written out of order, following the contiguous front, as sha256 and md5', async () => {
    const data = randomFile(3 * 1024 * 1024 + 17);
    const third = Math.floor(data.length / 3);
    for (const algorithm of ['sha256', 'md5'] as const) {
      const path = await tempFile();
      const file = await open(path, 'w');
      const hash = new FollowingHash(path, algorithm);
      // The last third lands first; the front only moves once the bytes before it are on disk.
      await file.write(data, 2 * third, data.length - 2 * third, 2 * third);
      await file.write(data, 0, third, 0);
      hash.advance(third);
      await file.write(data, third, third, third);
      hash.advance(data.length);
      await file.close();
      expect(await hash.digest(data.length)).toBe(createHash(algorithm).update(data).digest('hex'));
    }
  });

  it('a file that is shorter than the size given fails the digest, naming the file', async () => {
    const path = await tempFile();
    const file = await open(path, 'w');
    await file.write(randomFile(1000));
    await file.close();
    const hash = new FollowingHash(path, 'sha256');
    await expect(hash.digest(2000)).rejects.toMatchObject({ code: 'VERIFY', message: expect.stringContaining(path) });
  });

  it('a missing file fails the digest; cancelled jobs leave the worker usable', async () => {
    const missing = new FollowingHash('/nonexistent/r2d1/file.bin', 'sha256');
    await expect(missing.digest(1)).rejects.toMatchObject({ code: 'VERIFY', message: expect.stringContaining('/nonexistent/r2d1/file.bin') });
    const path = await tempFile();
    const file = await open(path, 'w');
    await file.write(Buffer.from('abc'));
    await file.close();
    new FollowingHash(path, 'sha256').cancel();
    expect(await new FollowingHash(path, 'sha256').digest(3)).toBe(createHash('sha256').update('abc').digest('hex'));
  });
});
