import * as core from '@actions/core';
import type { Env } from '../core/config.js';
import { R2d1Error } from '../core/errors.js';
import { CredentialInputs, Inputs, Modes, type Mode } from './constants.js';

export interface ActionSettings {
  mode: Mode;
  source: string;
  path: string;
  jobId: string;
  pollEvery: number;
  keep: number;
  timeout: number;
  force: boolean;
  cache: boolean;
  /** The environment the core reads: the step's, with every credential input applied as its R2D1_* variable. */
  env: Env;
}

const bad = (input: string, message: string, expected: string) =>
  new R2d1Error('BAD_INPUT', `input "${input}" ${message}`, { hint: expected });

function positive(input: string, fallback: number, integer: boolean): number {
  const raw = core.getInput(input);
  if (raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= 0 || (integer && !Number.isInteger(value))) {
    throw bad(input, `is ${JSON.stringify(raw)}`, `expected a positive ${integer ? 'integer' : 'number'}, for example ${fallback}`);
  }
  return value;
}

function bool(input: string): boolean {
  const raw = core.getInput(input).toLowerCase();
  if (raw === '' || raw === 'false') return false;
  if (raw === 'true') return true;
  throw bad(input, `is ${JSON.stringify(raw)}`, 'expected true or false');
}

/** One typed settings object from the step's inputs; credentials are masked before anything is logged. */
export function getSettings(): ActionSettings {
  const env: Env = { ...process.env };
  for (const [input, variable, secret] of CredentialInputs) {
    const value = core.getInput(input);
    if (value) env[variable] = value;
    const effective = env[variable];
    if (secret && effective) core.setSecret(effective);
  }
  for (const alias of ['AWS_SECRET_ACCESS_KEY', 'CLOUDFLARE_API_TOKEN', 'AWS_ACCESS_KEY_ID']) {
    if (env[alias]) core.setSecret(env[alias]!);
  }
  const mode = core.getInput(Inputs.Mode, { required: true }) as Mode;
  if (!Modes.includes(mode)) throw bad(Inputs.Mode, `is ${JSON.stringify(mode)}`, `expected one of: ${Modes.join(', ')}`);
  return {
    mode,
    source: core.getInput(Inputs.Source),
    path: core.getInput(Inputs.Path),
    jobId: core.getInput(Inputs.JobId),
    pollEvery: positive(Inputs.PollEvery, 30, false),
    keep: positive(Inputs.Keep, 1, true),
    timeout: positive(Inputs.Timeout, 300, false),
    force: bool(Inputs.Force),
    cache: bool(Inputs.Cache),
    env,
  };
}

export function requireInput(value: string, input: string, example: string): string {
  if (!value) throw bad(input, 'is required in this mode', `for example ${input}: ${example}`);
  return value;
}

/** Core errors name variables; a workflow author sets inputs: name both. */
export function inActionTerms(message: string): string {
  let text = message;
  for (const [input, variable] of CredentialInputs) {
    text = text.replace(new RegExp(`\\b${variable}\\b`, 'g'), `input "${input}" (or ${variable})`);
  }
  return text;
}
