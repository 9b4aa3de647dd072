import { execFile } from 'node:child_process';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { makeTempDir } from './rig/rig.js';

const run = promisify(execFile);
const root = join(import.meta.dirname, '..');

/** CI's check-dist: the committed bundles are exactly what the sources build. */
describe('dist/', () => {
  it('dist/cli/index.js is what `npm run bundle` builds from the sources', async () => {
    const out = await makeTempDir('r2d1-dist-');
    try {
      await run('npx', ['ncc', 'build', 'src/cli/index.ts', '-o', out, '--minify', '--no-source-map-register'], { cwd: root });
      const [built, committed] = await Promise.all([readFile(join(out, 'index.js'), 'utf8'), readFile(join(root, 'dist/cli/index.js'), 'utf8')]);
      if (built !== committed) throw new Error('dist/cli/index.js is stale: run `npm run bundle` and commit dist/');
      expect(built).toBe(committed);
    } finally {
      await rm(out, { recursive: true, force: true });
    }
  }, 120_000);
});
