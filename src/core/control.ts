/**
 * A background courier and the process that controls it (the GitHub Action's flush and post steps)
 * talk through files in a state directory:
 *
 *   courier.json   written by the courier once it watches: { pid, dir, jobId, startedAt }
 *   flush.json     written by the controller before SIGTERM: { timeout } for the final flush
 *   report.json    written by the courier as it exits: the ShipReport
 *   handled        written by the controller once it has reported the outcome (post then does nothing)
 *   courier.log    the courier's output
 */
import { randomBytes } from 'node:crypto';
import { readFile, rename, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ShipReport } from './courier.js';
import { R2d1Error } from './errors.js';
import { sleep } from './retry.js';

export interface CourierInfo {
  pid: number;
  dir: string;
  jobId: string;
  startedAt: string;
}

export const controlFiles = (stateDir: string) => ({
  info: join(stateDir, 'courier.json'),
  flushRequest: join(stateDir, 'flush.json'),
  report: join(stateDir, 'report.json'),
  handled: join(stateDir, 'handled'),
  log: join(stateDir, 'courier.log'),
});

export async function writeJsonAtomic(path: string, value: unknown): Promise<void> {
  const temp = `${path}.tmp-${randomBytes(4).toString('hex')}`;
  await writeFile(temp, JSON.stringify(value, null, 1));
  await rename(temp, path);
}

async function readJson<T>(path: string): Promise<T | undefined> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as T;
  } catch {
    return undefined;
  }
}

export const readCourierInfo = (stateDir: string) => readJson<CourierInfo>(controlFiles(stateDir).info);
export const readReport = (stateDir: string) => readJson<ShipReport>(controlFiles(stateDir).report);
export const readFlushRequest = (stateDir: string) => readJson<{ timeout?: number }>(controlFiles(stateDir).flushRequest);

/** Alive and not a zombie (a detached courier's parent may never reap it). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return true; // no /proc (macOS): trust kill(0)
  }
}

/** Waits until `ready()` holds, or throws after `timeoutMs`. */
export async function waitFor<T>(ready: () => Promise<T | undefined>, timeoutMs: number, what: string, hint: string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await ready();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new R2d1Error('TIMEOUT', `${what} within ${Math.round(timeoutMs / 1000)}s`, { hint });
    await sleep(100);
  }
}

/**
 * Asks the courier in `stateDir` to flush (final scan, ship, stop) within `timeoutSeconds`, and
 * returns its report. Throws when no courier is there or it dies without reporting.
 */
export async function flushCourier(stateDir: string, timeoutSeconds: number): Promise<ShipReport> {
  const files = controlFiles(stateDir);
  const info = await readCourierInfo(stateDir);
  if (!info) {
    throw new R2d1Error('BAD_INPUT', `no courier was started in ${stateDir}`, { hint: 'run the watch-start mode before flush' });
  }
  const finished = await readReport(stateDir);
  if (finished) return finished; // it already stopped (flushed before)
  if (!isAlive(info.pid)) {
    throw new R2d1Error('STORE', `the courier (pid ${info.pid}) exited without a report: checkpoints may not have shipped`, {
      hint: `see its log, ${files.log}`,
    });
  }
  await writeJsonAtomic(files.flushRequest, { timeout: timeoutSeconds });
  process.kill(info.pid, 'SIGTERM');
  // The courier bounds its own flush by the timeout; allow it time to write the report and exit.
  return waitFor(
    async () => {
      const report = await readReport(stateDir);
      if (report) return report;
      if (!isAlive(info.pid)) {
        throw new R2d1Error('STORE', `the courier (pid ${info.pid}) exited during the flush without a report`, { hint: `see its log, ${files.log}` });
      }
      return undefined;
    },
    (timeoutSeconds + 30) * 1000,
    `the courier (pid ${info.pid}) did not finish its flush`,
    `see its log, ${files.log}`,
  );
}
