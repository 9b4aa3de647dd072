import { execFile } from 'node:child_process';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { makeTempDir } from './rig/rig.js';

const run = promisify(execFile);
const root = join(import.meta.dirname, '..');

/**
 * CI's check-dist: the committed bundles are exactly what the sources build. dist/cli is the CLI;
 * dist/main and dist/post are the GitHub Action's entry points (action.yml: runs.main / runs.post),
 * and dist/main starts the courier from dist/cli.
 */
describe('dist/', () => {
  it.each([
    ['dist/cli/index.js', 'src/cli/index.ts'],
    ['dist/main/index.js', 'src/action/main/index.ts'],
    ['dist/post/index.js', 'src/action/post/index.ts'],
  ])('%s is what `npm run bundle` builds from %s', async (bundle, source) => {
    const out = await makeTempDir('r2d1-dist-');
    try {
      await run('npx', ['ncc', 'build', source, '-o', out, '--minify', '--no-source-map-register'], { cwd: root });
      const [built, committed] = await Promise.all([readFile(join(out, 'index.js'), 'utf8'), readFile(join(root, bundle), 'utf8')]);
      if (built !== committed) throw new Error(`${bundle} is stale: run \`npm run bundle\` and commit dist/`);
      expect(built).toBe(committed);
    } finally {
      await rm(out, { recursive: true, force: true });
    }
  }, 120_000);
});
