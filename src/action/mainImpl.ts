import { writeFile } from 'node:fs/promises';
import * as core from '@actions/core';
import { loadConfig } from '../core/config.js';
import { controlFiles, flushCourier } from '../core/control.js';
import { describeError } from '../core/errors.js';
import { Fetcher, type FetchInfo } from '../core/fetcher.js';
import { checkSegment } from '../core/keys.js';
import { parseR2Uri } from '../core/layout.js';
import { actionLogger } from './actionLogger.js';
import { pullWithCache } from './cache.js';
import { CourierDirEnv, Inputs, Outputs, State } from './constants.js';
import { startCourier } from './courierProcess.js';
import { getSettings, inActionTerms, requireInput, type ActionSettings } from './inputHelper.js';
import { publishReport } from './report.js';

export async function run(): Promise<void> {
  try {
    const settings = getSettings();
    if (settings.mode === 'pull') await pull(settings);
    else if (settings.mode === 'watch-start') await watchStart(settings);
    else await flush(settings);
  } catch (err) {
    core.setFailed(inActionTerms(describeError(err)));
  }
}

async function pull(settings: ActionSettings): Promise<void> {
  const source = requireInput(settings.source, Inputs.Source, 'r2://jobs/my_run/latest');
  parseR2Uri(source);
  const dest = requireInput(settings.path, Inputs.Path, './checkpoints');
  const fetcher = Fetcher.fromEnv(settings.env, { logger: actionLogger });
  let info: FetchInfo;
  try {
    info = settings.cache ? await pullWithCache(fetcher, source, dest, settings.force) : await fetcher.pull(source, { dest, force: settings.force });
  } finally {
    fetcher.close();
  }
  core.setOutput(Outputs.Found, info.found);
  core.setOutput(Outputs.Epoch, info.epoch ?? '');
  core.setOutput(Outputs.Name, info.name ?? '');
  core.setOutput(Outputs.LocalDir, info.found ? info.localDir : '');
  core.setOutput(Outputs.Bytes, info.bytes);
  core.setOutput(Outputs.Cached, info.cached);
  core.info(info.found ? `pulled ${source} → ${info.localDir}${info.cached ? ' (already present)' : ''}` : `fresh start: nothing committed at ${source}`);
}

async function watchStart(settings: ActionSettings): Promise<void> {
  const path = requireInput(settings.path, Inputs.Path, './checkpoints');
  checkSegment(requireInput(settings.jobId, Inputs.JobId, '${{ github.run_id }}'), 'job id');
  loadConfig(settings.env); // fail here, naming the inputs, rather than in the background
  const { stateDir, info } = await startCourier({ ...settings, path });
  core.saveState(State.CourierDir, stateDir);
  core.exportVariable(CourierDirEnv, stateDir);
  core.info(`courier started (pid ${info.pid}) watching ${path} for job ${info.jobId}; log: ${controlFiles(stateDir).log}`);
}

async function flush(settings: ActionSettings): Promise<void> {
  const stateDir = process.env[CourierDirEnv];
  if (!stateDir) {
    throw new Error(`no courier is running in this job (${CourierDirEnv} is not set): use mode watch-start in an earlier step`);
  }
  await flushAndReport(stateDir, settings.timeout, 'r2d1 flush');
}

/** Flushes the courier, reports, marks the outcome handled (so post does nothing), fails on loss. */
export async function flushAndReport(stateDir: string, timeout: number, heading: string): Promise<void> {
  const report = await flushCourier(stateDir, timeout);
  await writeFile(controlFiles(stateDir).handled, heading);
  await publishReport(report, heading);
  if (!report.ok) core.setFailed(`${report.failed.length} checkpoint(s) were not shipped: ${report.failed.map((f) => `${f.name} (${f.reason})`).join('; ')}`);
}
