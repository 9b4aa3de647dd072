import { existsSync } from 'node:fs';
import * as core from '@actions/core';
import { controlFiles } from '../core/control.js';
import { describeError } from '../core/errors.js';
import { State } from './constants.js';
import { getSettings, inActionTerms } from './inputHelper.js';
import { flushAndReport } from './mainImpl.js';

/**
 * Runs after every use of the action (`post-if: always()`); only the watch-start step saved a
 * courier. If its outcome was not reported by a flush step (training failed, the job was cancelled,
 * the flush step was forgotten), flush it now and fail the job if checkpoints were lost.
 */
export async function run(): Promise<void> {
  try {
    const stateDir = core.getState(State.CourierDir);
    if (!stateDir) return;
    if (existsSync(controlFiles(stateDir).handled)) {
      core.info('the courier was already flushed by a flush step');
      return;
    }
    core.info('the courier is still running (training failed, the job was cancelled, or no flush step ran): flushing now');
    await flushAndReport(stateDir, getSettings().timeout, 'r2d1 post-job flush');
  } catch (err) {
    core.setFailed(inActionTerms(describeError(err)));
  }
}
