import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { controlFiles, readCourierInfo, waitFor, type CourierInfo } from '../core/control.js';
import { R2d1Error } from '../core/errors.js';
import type { ActionSettings } from './inputHelper.js';

/**
 * The bundled CLI beside this bundle: dist/main/index.js → dist/cli/index.js. (Built at run time so
 * that ncc does not take the path for an asset to copy.)
 */
const cliPath = () => join(dirname(fileURLToPath(import.meta.url)), ['..', 'cli', 'index.js'].join(sep));

/** Last `r2d1:` error line of the courier's log, or its tail. */
function lastError(logPath: string): string {
  let text = '';
  try {
    text = readFileSync(logPath, 'utf8');
  } catch {
    return '(no log)';
  }
  const lines = text.trim().split('\n');
  return [...lines].reverse().find((l) => l.startsWith('r2d1: ')) ?? lines.slice(-3).join(' | ');
}

/**
 * Starts `r2d1 watch` as a detached process in its own session (a cancelled step's SIGINT does not
 * reach it; it outlives the step), logging to a file, and waits until it watches.
 */
export async function startCourier(settings: ActionSettings, readyTimeoutMs = 60_000): Promise<{ stateDir: string; info: CourierInfo }> {
  // Cancelled before the courier is ready: nothing is saved for post yet, so stop it here. Installed
  // before the spawn: a SIGINT landing between the spawn and the handler would kill this step by
  // default and leave the courier running with no state for post to find.
  let child: ChildProcess | undefined;
  let ready = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (ready) return; // ready: the step only saves its state and exits
    try {
      if (child?.pid !== undefined) process.kill(child.pid, 'SIGKILL');
    } catch {
      // already gone
    }
    process.stdout.write(`::error::cancelled (${signal}) while the courier was starting; ${child ? 'it was stopped' : 'it was not started'}\n`);
    process.exit(1);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const stateDir = await mkdtemp(join(process.env.RUNNER_TEMP || tmpdir(), 'r2d1-courier-'));
  const files = controlFiles(stateDir);
  const log = openSync(files.log, 'a');
  const args = [
    cliPath(), 'watch', settings.path, '--job-id', settings.jobId, '--poll-every', String(settings.pollEvery),
    '--keep', String(settings.keep), '--timeout', String(settings.timeout), '--state-dir', stateDir,
  ];
  child = spawn(process.execPath, args, { detached: true, stdio: ['ignore', log, log], env: settings.env as NodeJS.ProcessEnv });
  closeSync(log);
  let exited: number | null | undefined;
  child.on('exit', (code) => (exited = code));
  child.unref();
  const info = await waitFor(
    async () => {
      const ready = await readCourierInfo(stateDir);
      if (ready) return ready;
      if (exited !== undefined) {
        throw new R2d1Error('STORE', `the courier exited at start (code ${exited}): ${lastError(files.log)}`, { hint: `its log is ${files.log}` });
      }
      return undefined;
    },
    readyTimeoutMs,
    'the courier did not report ready',
    `see its log, ${files.log}`,
  );
  ready = true;
  return { stateDir, info };
}
