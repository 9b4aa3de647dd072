import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const root = join(import.meta.dirname, '..');

/** The README's first command: the demo must work on a fresh machine with no Cloudflare account. */
describe('npm run demo', () => {
  it('ships rotating slots to the local store and pulls back the latest epoch, verified', async () => {
    const env = { PATH: process.env.PATH, HOME: process.env.HOME };
    const { stdout } = await run('node', [join(root, 'lib/demo/demo.js')], { cwd: root, env, timeout: 60_000 });
    expect(stdout).toContain('flush: 6 versions committed, 0 failed');
    expect(stdout).toMatch(/pull r2:\/\/jobs\/demo\/latest → found=true slot_0 epoch 6, 3 files/);
    expect(stdout.match(/matches the training output/g)).toHaveLength(3);
    expect(stdout).toContain('cached=true');
    expect(stdout.trim().endsWith('demo OK')).toBe(true);
  }, 90_000);
});
