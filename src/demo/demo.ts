/**
 * `npm run demo`: a simulated training job writes rotating checkpoint slots while the courier ships
 * them to a local store (no Cloudflare account needed), then `latest` is pulled back and verified.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Courier, Fetcher, FileStore, consoleLogger, formatBytes } from '../index.js';
import { listCheckpointFiles } from '../core/courier.js';
import { hashFile } from '../core/transfer.js';

const EPOCHS = 6;
const SLOTS = 2;

async function writeCheckpoint(dir: string, epoch: number): Promise<string> {
  const name = `slot_${epoch % SLOTS}`;
  const folder = join(dir, name);
  await mkdir(folder, { recursive: true });
  await writeFile(join(folder, 'model.safetensors'), randomBytes(6 * 1024 * 1024));
  await writeFile(join(folder, 'optimizer.pt'), randomBytes(3 * 1024 * 1024));
  await writeFile(join(folder, 'config.json'), JSON.stringify({ hidden: 512, layers: 8 }));
  const sidecar = { name, epoch, timestamp: Date.now() / 1000, files: ['model.safetensors', 'optimizer.pt', 'config.json'], metadata: { loss: +(2 / epoch).toFixed(3) } };
  await writeFile(join(dir, `${name}.json`), JSON.stringify(sidecar, null, 2)); // written LAST
  return name;
}

const work = await mkdtemp(join(tmpdir(), 'r2d1-demo-'));
const checkpoints = join(work, 'checkpoints');
const store = join(work, 'store');
const restored = join(work, 'restored');
const logger = consoleLogger();
const say = (line: string) => process.stdout.write(`${line}\n`);

say(`r2d1 demo in ${work}\n  store: file://${store} (a local directory standing in for the R2 bucket)\n`);
const courier = new Courier({ store: new FileStore(store) }, { logger });
await courier.watch(checkpoints, { jobId: 'demo', pollEvery: 5 });

let last = '';
for (let epoch = 1; epoch <= EPOCHS; epoch++) {
  last = await writeCheckpoint(checkpoints, epoch);
  say(`train: epoch ${epoch} written to ${last}/ (+ ${last}.json)`);
  await new Promise((resolve) => setTimeout(resolve, 400));
}

const report = await courier.flush({ timeout: 60 });
say(`\nflush: ${report.shipped.length} versions committed, ${report.failed.length} failed`);
for (const f of report.failed) say(`  FAILED ${f.name}: ${f.reason}`);

const fetcher = new Fetcher({ store: new FileStore(store) }, { logger });
const info = await fetcher.pull('r2://jobs/demo/latest', { dest: restored });
say(`\npull r2://jobs/demo/latest → found=${info.found} ${info.name} epoch ${info.epoch}, ${info.files} files, ${formatBytes(info.bytes)}`);
say(`  every file's size and SHA-256 checked against the manifest before ${info.localDir} was renamed into place`);

let identical = true;
for (const file of await listCheckpointFiles(join(checkpoints, last))) {
  const [original, pulled] = await Promise.all([hashFile(file.path), hashFile(join(info.localDir, file.relative))]);
  identical &&= original === pulled;
  say(`  ${file.relative.padEnd(18)} sha256 ${pulled.slice(0, 16)}… ${original === pulled ? 'matches the training output' : 'DIFFERS'}`);
}
const sidecarBack = await readFile(join(restored, `${last}.json`), 'utf8');
say(`  sidecar restored beside it: ${JSON.stringify(JSON.parse(sidecarBack).metadata)}`);
const again = await fetcher.pull('r2://jobs/demo/latest', { dest: restored });
say(`pull again → cached=${again.cached} (already on disk and unchanged: nothing downloaded)`);
const ok = report.ok && info.found && info.epoch === EPOCHS && identical && again.cached;
say(ok ? '\ndemo OK' : '\ndemo FAILED');
process.exitCode = ok ? 0 : 1;
