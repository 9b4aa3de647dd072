import { spawn } from 'node:child_process';
import { parseArgs } from 'node:util';
import { openBackends } from '../core/backends.js';
import { describeConfig, loadConfig, withDotEnv, type Env } from '../core/config.js';
import { Courier, formatBytes, type ShipReport } from '../core/courier.js';
import { R2d1Error, describeError } from '../core/errors.js';
import { Fetcher, type FetchInfo } from '../core/fetcher.js';
import { checkSegment } from '../core/keys.js';
import { consoleLogger, type Logger } from '../core/logger.js';
import { controlFiles, readFlushRequest, writeJsonAtomic } from '../core/control.js';
import { ProgressMeter } from './progress.js';

const USAGE = `r2d1: checkpoint courier for Cloudflare R2 + D1

usage:
  r2d1 watch DIR --job-id ID [--poll-every S] [--keep N] [--timeout S] [--state-dir DIR]
  r2d1 ship DIR --job-id ID [--keep N] [--timeout S]
  r2d1 pull URI --dest DIR [--force]
  r2d1 run [--pull URI --dest DIR] --watch DIR --job-id ID [--poll-every S] [--keep N] [--timeout S] -- CMD [ARGS...]
  r2d1 ls --job-id ID
  r2d1 status --job-id ID
  r2d1 secrets

URIs: r2://jobs/<id>/latest, r2://jobs/<id>/<name>, r2://<prefix>
options: --json (machine-readable result on stdout), --verbose (debug logs, stack traces)
configuration: R2D1_* environment variables or a .env file; see \`r2d1 secrets\``;

const OPTIONS = {
  'job-id': { type: 'string' },
  'state-dir': { type: 'string' },
  'poll-every': { type: 'string' },
  keep: { type: 'string' },
  timeout: { type: 'string' },
  dest: { type: 'string' },
  force: { type: 'boolean' },
  pull: { type: 'string' },
  watch: { type: 'string' },
  json: { type: 'boolean' },
  verbose: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

type Values = ReturnType<typeof parse>['values'];

function parse(args: string[]) {
  return parseArgs({ args, options: OPTIONS, allowPositionals: true, strict: true });
}

export interface CliIo {
  env: Env;
  stdout: (text: string) => void;
  logger?: Logger;
}

/** Runs one CLI invocation and returns its exit code: 0 ok, 1 something failed, 2 bad usage or configuration. */
export async function main(argv: string[], io: CliIo = { env: process.env, stdout: (t) => process.stdout.write(t) }): Promise<number> {
  const dashdash = argv.indexOf('--');
  const command = dashdash >= 0 ? argv.slice(dashdash + 1) : [];
  let values: Values;
  let positionals: string[];
  try {
    ({ values, positionals } = parse(dashdash >= 0 ? argv.slice(0, dashdash) : argv));
  } catch (err) {
    process.stderr.write(`r2d1: ${describeError(err)}\n\n${USAGE}\n`);
    return 2;
  }
  const [verb, ...rest] = positionals;
  if (values.help || !verb) {
    io.stdout(`${USAGE}\n`);
    return verb || values.help ? 0 : 2;
  }
  const logger = io.logger ?? consoleLogger(values.verbose);
  const out = (result: unknown, human: string) => io.stdout(values.json ? `${JSON.stringify(result)}\n` : `${human}\n`);
  try {
    const env = withDotEnv(io.env);
    switch (verb) {
      case 'secrets':
        return secrets(env, out);
      case 'pull':
        return await pull(env, logger, required(rest[0], 'URI', 'r2d1 pull r2://jobs/<id>/latest --dest ./checkpoints'), values, out);
      case 'watch':
        return await watch(env, logger, required(rest[0], 'DIR', 'r2d1 watch ./checkpoints --job-id my_run'), values, out);
      case 'ship':
        return await ship(env, logger, required(rest[0], 'DIR', 'r2d1 ship ./checkpoints --job-id my_run'), values, out);
      case 'run':
        return await runTraining(env, logger, values, command, out);
      case 'ls':
        return await ls(env, logger, values, out);
      case 'status':
        return await status(env, logger, values, out);
      default:
        throw new R2d1Error('BAD_INPUT', `unknown command ${JSON.stringify(verb)}`, { hint: 'run r2d1 --help for the commands' });
    }
  } catch (err) {
    const line = `r2d1: ${describeError(err)}`;
    process.stderr.write(`${line}\n`);
    if (values.verbose && err instanceof Error && err.stack) process.stderr.write(`${err.stack}\n`);
    if (values.json) io.stdout(`${JSON.stringify({ ok: false, error: describeError(err) })}\n`);
    return err instanceof R2d1Error && (err.code === 'CONFIG' || err.code === 'BAD_INPUT') ? 2 : 1;
  }
}

type Out = (result: unknown, human: string) => void;

function required(value: string | undefined, what: string, example: string): string {
  if (!value) throw new R2d1Error('BAD_INPUT', `missing ${what}`, { hint: `for example: ${example}` });
  return value;
}

function jobIdOf(values: Values): string {
  return checkSegment(required(values['job-id'], '--job-id', '--job-id my_run'), 'job id');
}

function numberOption(values: Values, name: 'poll-every' | 'keep' | 'timeout', fallback: number, integer = false): number {
  const raw = values[name];
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= 0 || (integer && !Number.isInteger(value))) {
    throw new R2d1Error('BAD_INPUT', `--${name} ${JSON.stringify(raw)} is not a positive ${integer ? 'integer' : 'number'}`, {
      hint: `for example --${name} ${fallback}`,
    });
  }
  return value;
}

function secrets(env: Env, out: Out): number {
  const config = loadConfig(env);
  const lines = describeConfig(config);
  const mode = config.d1 ? 'R2 + D1' : 'R2-only (no D1 rows)';
  const width = Math.max(...lines.map((l) => l.setting.length));
  out(
    { mode, settings: lines },
    [`mode: ${mode}`, ...lines.map((l) => `${l.setting.padEnd(width)}  ${l.value}  (${l.variable})`)].join('\n'),
  );
  return 0;
}

function backendsFrom(env: Env, logger: Logger) {
  return openBackends(loadConfig(env), logger);
}

async function pull(env: Env, logger: Logger, uri: string, values: Values, out: Out): Promise<number> {
  const info = await pullInto(env, logger, uri, required(values.dest, '--dest', '--dest ./checkpoints'), values.force ?? false);
  out(info, describeFetch(info));
  return 0;
}

async function pullInto(env: Env, logger: Logger, uri: string, dest: string, force: boolean): Promise<FetchInfo> {
  const meter = new ProgressMeter('pull');
  const fetcher = new Fetcher(backendsFrom(env, logger), { logger, onProgress: meter.add, onPlanned: meter.plan });
  try {
    return await fetcher.pull(uri, { dest, force });
  } finally {
    meter.done();
    fetcher.close();
  }
}

function describeFetch(info: FetchInfo): string {
  if (!info.found) return `fresh start: nothing committed at ${info.source}`;
  const what = info.name !== undefined ? `${info.name} epoch ${info.epoch}` : info.source;
  const how = info.cached ? 'already on disk and unchanged, nothing downloaded' : `${formatBytes(info.downloaded)} downloaded and verified`;
  return `${what} → ${info.localDir} (${info.files} files, ${formatBytes(info.bytes)}; ${how})`;
}

function describeReport(report: ShipReport): string {
  const lines = report.shipped.map((s) => `shipped ${s.name} epoch ${s.epoch}: ${s.files} files, ${formatBytes(s.bytes)} → ${s.key}`);
  for (const f of report.failed) lines.push(`FAILED ${f.name}${f.epoch !== undefined ? ` epoch ${f.epoch}` : ''}: ${f.reason}`);
  for (const name of report.d1Pending) lines.push(`D1 row for ${name} not written (the checkpoint is in the bucket)`);
  lines.push(report.ok ? `ok: ${report.shipped.length} checkpoint(s) shipped` : `${report.failed.length} checkpoint(s) NOT shipped`);
  return lines.join('\n');
}

function courierFrom(env: Env, logger: Logger): { courier: Courier; meter: ProgressMeter } {
  const meter = new ProgressMeter('ship');
  return { courier: new Courier(backendsFrom(env, logger), { logger, onProgress: meter.add, onPlanned: meter.plan }), meter };
}

async function ship(env: Env, logger: Logger, dir: string, values: Values, out: Out): Promise<number> {
  const { courier, meter } = courierFrom(env, logger);
  try {
    const report = await courier.ship(dir, { jobId: jobIdOf(values), keep: numberOption(values, 'keep', 1, true), timeout: numberOption(values, 'timeout', 3600) });
    meter.done();
    out(report, describeReport(report));
    return report.ok ? 0 : 1;
  } finally {
    courier.close();
  }
}

/** Resolves on the first SIGINT or SIGTERM. */
function nextSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const on = (signal: NodeJS.Signals) => {
      process.off('SIGINT', on);
      process.off('SIGTERM', on);
      resolve(signal);
    };
    process.on('SIGINT', on);
    process.on('SIGTERM', on);
  });
}

async function watch(env: Env, logger: Logger, dir: string, values: Values, out: Out): Promise<number> {
  const { courier, meter } = courierFrom(env, logger);
  try {
    const jobId = jobIdOf(values);
    const stateDir = values['state-dir'];
    await courier.watch(dir, { jobId, pollEvery: numberOption(values, 'poll-every', 30), keep: numberOption(values, 'keep', 1, true) });
    if (stateDir) await writeJsonAtomic(controlFiles(stateDir).info, { pid: process.pid, dir, jobId, startedAt: new Date().toISOString() });
    const signal = await nextSignal();
    const requested = stateDir ? (await readFlushRequest(stateDir))?.timeout : undefined;
    const timeout = requested ?? numberOption(values, 'timeout', 300);
    logger.info(`${signal}: flushing before exit (up to ${timeout}s)`);
    const report = await courier.flush({ timeout });
    meter.done();
    if (stateDir) await writeJsonAtomic(controlFiles(stateDir).report, report);
    out(report, describeReport(report));
    return report.ok ? 0 : 1;
  } finally {
    courier.close();
  }
}

async function runTraining(env: Env, logger: Logger, values: Values, command: string[], out: Out): Promise<number> {
  const dir = required(values.watch, '--watch', '--watch ./checkpoints');
  const jobId = jobIdOf(values);
  if (command.length === 0) throw new R2d1Error('BAD_INPUT', 'missing the training command', { hint: 'put it after --, for example: r2d1 run --watch ./ckpt --job-id my_run -- python train.py' });
  let pulled: FetchInfo | undefined;
  if (values.pull) pulled = await pullInto(env, logger, values.pull, required(values.dest, '--dest', '--dest ./checkpoints'), values.force ?? false);
  if (pulled) logger.info(describeFetch(pulled));
  const { courier, meter } = courierFrom(env, logger);
  try {
    await courier.watch(dir, { jobId, pollEvery: numberOption(values, 'poll-every', 30), keep: numberOption(values, 'keep', 1, true) });
    // With --json, stdout carries only r2d1's result: the command's output goes to stderr.
    // The training command does not need r2d1's credentials: keep them out of its environment.
    const childEnv = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('R2D1_')));
    const child = spawn(command[0], command.slice(1), { stdio: ['inherit', values.json ? 2 : 'inherit', 'inherit'], env: childEnv });
    // The child gets the terminal's signals itself; r2d1 waits for it to exit, then flushes.
    const ignore = () => logger.info('signal received: waiting for the training command to exit, then flushing');
    process.on('SIGINT', ignore);
    process.on('SIGTERM', ignore);
    const code = await new Promise<number>((resolve) => {
      child.on('error', (err) => {
        logger.error(`cannot start ${command[0]}: ${err.message}`);
        resolve(127);
      });
      child.on('exit', (status, signal) => resolve(status ?? (signal ? 128 + (signalNumber(signal) ?? 1) : 1)));
    });
    logger.info(`training command exited with ${code}; flushing`);
    const report = await courier.flush({ timeout: numberOption(values, 'timeout', 300) });
    process.off('SIGINT', ignore);
    process.off('SIGTERM', ignore);
    meter.done();
    out({ ...report, exitCode: code, pulled }, describeReport(report));
    return code !== 0 ? code : report.ok ? 0 : 1;
  } finally {
    courier.close();
  }
}

function signalNumber(signal: NodeJS.Signals): number | undefined {
  return ({ SIGHUP: 1, SIGINT: 2, SIGKILL: 9, SIGTERM: 15 } as Record<string, number>)[signal];
}

async function ls(env: Env, logger: Logger, values: Values, out: Out): Promise<number> {
  const jobId = jobIdOf(values);
  const fetcher = new Fetcher(backendsFrom(env, logger), { logger });
  try {
    const now = Date.now() / 1000;
    const rows = (await fetcher.list(jobId)).map(({ manifest: m }) => ({
      name: m.name,
      epoch: m.epoch,
      bytes: m.bytes,
      files: m.files.length,
      timestamp: m.timestamp,
      ageSeconds: Math.max(0, Math.round(now - m.timestamp)),
      key: m.prefix,
    }));
    const human = rows.length
      ? rows.map((r) => `${r.name.padEnd(16)} epoch ${String(r.epoch).padStart(6)}  ${formatBytes(r.bytes).padStart(10)}  ${formatAge(r.ageSeconds)} ago`).join('\n')
      : `no committed checkpoints for job ${jobId}`;
    out({ jobId, checkpoints: rows }, human);
    return 0;
  } finally {
    fetcher.close();
  }
}

async function status(env: Env, logger: Logger, values: Values, out: Out): Promise<number> {
  const jobId = jobIdOf(values);
  const fetcher = new Fetcher(backendsFrom(env, logger), { logger });
  try {
    const now = Date.now() / 1000;
    const rows = await fetcher.catalog.d1Rows(jobId);
    let result: { jobId: string; source: string; found: boolean; name?: string; epoch?: number; heartbeat?: number; heartbeatAgeSeconds?: number };
    if (rows) {
      const heartbeat = rows.reduce((max, r) => Math.max(max, r.timestamp), 0);
      result = { jobId, source: 'D1', found: rows.length > 0, name: rows[0]?.name, epoch: rows[0]?.epoch, heartbeat: heartbeat || undefined };
    } else {
      const latest = await fetcher.catalog.latest(jobId);
      const heartbeat = latest ? Math.max(...(await fetcher.list(jobId)).map((c) => c.manifest.timestamp)) : undefined;
      result = { jobId, source: 'R2', found: !!latest, name: latest?.manifest.name, epoch: latest?.manifest.epoch, heartbeat };
    }
    if (result.heartbeat !== undefined) result.heartbeatAgeSeconds = Math.max(0, Math.round(now - result.heartbeat));
    const human = result.found
      ? `job ${jobId}: latest epoch ${result.epoch} (${result.name}); last heartbeat ${formatAge(result.heartbeatAgeSeconds ?? 0)} ago (from ${result.source})`
      : `job ${jobId}: no committed checkpoints (from ${result.source})`;
    out(result, human);
    return 0;
  } finally {
    fetcher.close();
  }
}

function formatAge(seconds: number): string {
  if (seconds < 120) return `${seconds}s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)}m`;
  if (seconds < 172800) return `${Math.round(seconds / 3600)}h`;
  return `${Math.round(seconds / 86400)}d`;
}
