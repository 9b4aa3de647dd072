/**
 * Jest global teardown: disposes the Miniflare instance started by ./globalSetup.ts and removes the rig file.
 * Deliberately imports nothing from ./globalSetup.ts: global hooks are loaded outside jest-runtime, where
 * moduleNameMapper (the `.js` → `.ts` mapping) does not apply.
 */
import { rmSync } from 'node:fs';

const RIG_GLOBAL_KEY = '__R2D1_RIG__'; // same key as in globalSetup.ts

interface RigHandle {
  mf: { dispose(): Promise<void> };
  file: string;
}

export default async function globalTeardown(): Promise<void> {
  const g = globalThis as Record<string, unknown>;
  const handle = g[RIG_GLOBAL_KEY] as RigHandle | undefined;
  delete g[RIG_GLOBAL_KEY];
  const file = handle?.file ?? process.env.R2D1_RIG_FILE;
  try {
    await handle?.mf.dispose();
  } finally {
    if (file) rmSync(file, { force: true });
    delete process.env.R2D1_RIG_FILE;
  }
}
