#!/usr/bin/env node
/**
 * Vendors into dagger/vendor/ what the Dagger module runs, because the engine loads only dagger/
 * as the module's source (nothing from ../src or ../node_modules reaches it):
 *
 *   vendor/core/index.js       the library API (src/index.ts) and its dependencies (AWS SDK), one
 *                              ESM file built by ncc, exactly as `npm run bundle` builds dist/
 *   vendor/core/**\/*.d.ts      its declarations (tsc), so the module type-checks against what it runs
 *   vendor/core/licenses.txt   the third-party licenses of that bundle
 *   vendor/cli/r2d1.mjs        dist/cli/index.js, the single-file CLI that `train` runs in the
 *                              caller's container (+ its licenses.txt)
 *
 * Run from anywhere as `npm run bundle:dagger` (the last step of `npm run bundle`, after dist/cli is
 * built). `--out DIR` writes the same tree to DIR instead: __tests__/dagger.test.ts rebuilds it into
 * a temp dir and compares it byte for byte with the committed dagger/vendor/.
 *
 * Everything under dagger/vendor/ is generated: never edit it by hand.
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const { values } = parseArgs({ options: { out: { type: 'string' } } });
const out = resolve(values.out ?? join(root, 'dagger', 'vendor'));
const bin = (name) => join(root, 'node_modules', '.bin', name);
const run = (name, args) => execFileSync(bin(name), args, { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] });

rmSync(out, { recursive: true, force: true });
mkdirSync(join(out, 'core'), { recursive: true });
mkdirSync(join(out, 'cli'), { recursive: true });

const scratch = mkdtempSync(join(tmpdir(), 'r2d1-vendor-'));
try {
  // Same flags as the CLI bundle in `npm run bundle`. ncc also writes declarations for the whole
  // project into its output: only the bundle, its licenses and its {"type":"module"} are kept.
  run('ncc', ['build', 'src/index.ts', '-o', scratch, '--minify', '--no-source-map-register', '--license', 'licenses.txt', '--quiet']);
  for (const file of ['index.js', 'licenses.txt', 'package.json']) copyFileSync(join(scratch, file), join(out, 'core', file));
} finally {
  rmSync(scratch, { recursive: true, force: true });
}

// Declarations of src/index.ts and the core files it reaches (vendor/core/index.d.ts, core/*.d.ts).
run('tsc', [
  'src/index.ts',
  '--declaration', '--emitDeclarationOnly',
  '--outDir', join(out, 'core'), '--rootDir', 'src',
  '--module', 'NodeNext', '--moduleResolution', 'NodeNext', '--target', 'ES2022', '--lib', 'ES2022',
  '--types', 'node', '--strict', '--skipLibCheck',
]);

// The CLI that `train` runs: dist/cli/index.js as built by `npm run bundle`. `.mjs`, so that Node
// loads it as ESM wherever it lands (dist/cli/ has a package.json for that; the container does not).
copyFileSync(join(root, 'dist', 'cli', 'index.js'), join(out, 'cli', 'r2d1.mjs'));
copyFileSync(join(root, 'dist', 'cli', 'licenses.txt'), join(out, 'cli', 'licenses.txt'));
