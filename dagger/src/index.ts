/**
 * Checkpoint courier for ML training on Cloudflare R2 (objects) and D1 (metadata).
 *
 * pull a verified checkpoint or prefix, ask for a job's latest checkpoint, ship a directory of
 * checkpoints, or run a training command in your container with the courier alongside (pull the
 * latest first, ship while training, flush at the end). Credentials are Secret arguments (for
 * example --access-key=env:R2D1_R2_ACCESS_KEY); the bucket and endpoints are plain strings. Leave
 * out --api-token and --d1-database-id for R2-only mode (no D1 rows).
 */
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { func, object, type Container, type Directory, type Secret, type float } from '@dagger.io/dagger';
// The r2d1 core, through this one import path. In the engine it is the vendored bundle (the engine
// loads only dagger/: `npm run bundle:dagger` builds dagger/vendor/core/ from src/index.ts with ncc,
// plus tsc declarations). Under jest, the root package.json's moduleNameMapper maps exactly this
// specifier to src/index.ts, so the tests run the module against the sources, and a test rebuilds
// dagger/vendor/ and checks it is byte for byte what is committed.
import { Courier, Fetcher, describeError, loadConfig, openBackends, parseR2Uri, type Env, type Logger } from '../vendor/core/index.js';
import { boundary } from './boundary.js';

/** The Node runtime `train` adds to the caller's container: the `node` binary of this image. */
export const NODE_IMAGE = 'node:24-bookworm-slim';
/** Where `train` mounts the Node binary and the bundled CLI in the caller's container. */
export const NODE_PATH = '/r2d1/node';
export const CLI_PATH = '/r2d1/r2d1.mjs';
/** The bundled CLI in this module's source (dist/cli/index.js, vendored by `npm run bundle:dagger`). */
export const CLI_SOURCE = 'vendor/cli/r2d1.mjs';
/** Seconds a flush may take before an unshipped checkpoint counts as failed (the CLI's `ship` default). */
const SHIP_TIMEOUT_S = 3600;

/** The newest committed checkpoint of a job, as `latest` reports it. */
@object()
export class Checkpoint {
  /** False on a fresh start (nothing committed for the job): the other fields are then empty. */
  @func()
  found: boolean = false;

  /** Slot name: the checkpoint folder's name, e.g. slot_0. */
  @func()
  name: string = '';

  /** Training epoch from the sidecar; -1 when nothing was found. */
  @func()
  epoch: number = -1;

  /** Key prefix of the committed version's files in the bucket (jobs/<job>/<name>/<version>/). */
  @func()
  key: string = '';

  /** The sidecar's timestamp, in seconds since 1970. */
  @func()
  timestamp: float = 0;

  /** The sidecar's metadata object as JSON text ({} when there is none). */
  @func()
  metadata: string = '{}';
}

/** One checkpoint committed by `ship`. */
@object()
export class ShippedCheckpoint {
  /** Slot name. */
  @func()
  name: string = '';

  /** Training epoch from the sidecar. */
  @func()
  epoch: number = 0;

  /** Bytes uploaded. */
  @func()
  bytes: number = 0;

  /** Files uploaded. */
  @func()
  files: number = 0;

  /** Key prefix of the committed version's files in the bucket. */
  @func()
  key: string = '';

  /** Seconds the upload and commit took. */
  @func()
  seconds: float = 0;
}

/** What `ship` committed. Returned only when every checkpoint shipped: otherwise the call fails. */
@object()
export class ShipReport {
  /** Checkpoints committed by this call; those committed before are not shipped again. */
  @func()
  shipped: ShippedCheckpoint[] = [];

  /** Checkpoints whose D1 row is not written yet: their data is committed, the next ship writes the row. */
  @func()
  d1Pending: string[] = [];
}

/** The credentials and endpoints every function takes, as Dagger passes them (absent optionals are null). */
interface Credentials {
  bucket: string;
  accountId: Secret;
  accessKey: Secret;
  secretKey: Secret;
  endpoint?: string | null;
  sessionToken?: Secret | null;
  apiToken?: Secret | null;
  d1DatabaseId?: Secret | null;
  d1ApiUrl?: string | null;
}

/** Each credential's variable in r2d1's configuration (README: Configuration). */
const SECRET_VARS = {
  accountId: 'R2D1_ACCOUNT_ID',
  accessKey: 'R2D1_R2_ACCESS_KEY',
  secretKey: 'R2D1_R2_SECRET_KEY',
  sessionToken: 'R2D1_SESSION_TOKEN',
  apiToken: 'R2D1_API_TOKEN',
  d1DatabaseId: 'R2D1_D1_DATABASE_ID',
} as const satisfies Partial<Record<keyof Credentials, string>>;

const PLAIN_VARS = {
  bucket: 'R2D1_R2_BUCKET',
  endpoint: 'R2D1_R2_ENDPOINT_URL',
  d1ApiUrl: 'R2D1_D1_API_URL',
} as const satisfies Partial<Record<keyof Credentials, string>>;

/** The environment r2d1's core reads its configuration from, with the secrets' plaintext. */
async function coreEnv(c: Credentials): Promise<Env> {
  const env: Env = {};
  for (const [key, variable] of Object.entries(PLAIN_VARS)) {
    const value = c[key as keyof typeof PLAIN_VARS];
    if (value) env[variable] = value;
  }
  for (const [key, variable] of Object.entries(SECRET_VARS)) {
    const secret = c[key as keyof typeof SECRET_VARS];
    if (secret) env[variable] = await secret.plaintext();
  }
  return env;
}

async function backends(c: Credentials, logger: Logger) {
  return openBackends(loadConfig(await coreEnv(c)), logger);
}

/** A core error becomes a failed call carrying the core's message and its hint. */
async function surfaced<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (err) {
    throw new Error(describeError(err), { cause: err });
  }
}

/** The job id, checked as the core checks it (a path segment: no "/", no "..", not empty). */
function checkedJobId(jobId: string): string {
  const target = parseR2Uri(`r2://jobs/${jobId}/latest`);
  if (target.kind !== 'latest') throw new Error(`invalid job id ${JSON.stringify(jobId)}`);
  return target.jobId;
}

@object()
export class R2D1 {
  /**
   * Pulls a checkpoint or a prefix from R2, verified, as a Directory.
   *
   * r2://jobs/<id>/latest (the job's highest epoch) and r2://jobs/<id>/<name> give <name>/ and its
   * sidecar <name>.json, every file checked against the manifest's SHA-256; r2://<prefix> mirrors
   * the objects under the prefix. A fresh start (nothing committed yet) is an empty directory, not
   * an error; a wrong bucket or bad credentials fail the call.
   *
   * Example:
   *   dagger call pull --source=r2://jobs/my_run/latest --bucket=my-bucket --account-id=env:R2D1_ACCOUNT_ID --access-key=env:R2D1_R2_ACCESS_KEY --secret-key=env:R2D1_R2_SECRET_KEY export --path=./checkpoints
   */
  @func({ cache: 'never' })
  async pull(
    /** What to pull: r2://jobs/<id>/latest, r2://jobs/<id>/<name> or r2://<prefix>. */
    source: string,
    /** The R2 bucket. */
    bucket: string,
    /** Cloudflare account ID (builds the R2 endpoint, addresses D1). */
    accountId: Secret,
    /** R2 API token access key ID. */
    accessKey: Secret,
    /** R2 API token secret access key. */
    secretKey: Secret,
    /** R2 (S3 API) endpoint URL; default https://<account-id>.r2.cloudflarestorage.com. */
    endpoint?: string,
    /** Session token of temporary (scoped) R2 credentials. */
    sessionToken?: Secret,
    /** Cloudflare API token with D1 edit permission; leave out, with d1DatabaseId, for R2-only mode. */
    apiToken?: Secret,
    /** D1 database ID. */
    d1DatabaseId?: Secret,
    /** D1 REST API base URL; default https://api.cloudflare.com/client/v4. */
    d1ApiUrl?: string,
  ): Promise<Directory> {
    return surfaced(async () => {
      const { scratchDir, workdir, logger } = boundary();
      parseR2Uri(source);
      const folder = `r2d1-pull-${randomBytes(6).toString('hex')}`;
      const dest = join(scratchDir(), folder);
      await mkdir(dest, { recursive: true });
      const creds = { bucket, accountId, accessKey, secretKey, endpoint, sessionToken, apiToken, d1DatabaseId, d1ApiUrl };
      const fetcher = new Fetcher(await backends(creds, logger), { logger });
      try {
        const info = await fetcher.pull(source, { dest });
        if (!info.found) logger.info(`fresh start: nothing committed at ${source}; returning an empty directory`);
        // The fetcher's bookkeeping (temp downloads, what it verified) is not part of the checkpoint.
        if (info.name !== undefined) await rm(join(dest, '.r2d1'), { recursive: true, force: true });
      } finally {
        fetcher.close();
      }
      return workdir(folder);
    });
  }

  /**
   * The latest committed checkpoint of a job: name, epoch, key, timestamp and metadata.
   *
   * The highest epoch whose manifest reads and checks (D1 is asked first, the bucket listing is the
   * truth); found is false on a fresh start. Nothing is downloaded.
   *
   * Example:
   *   dagger call latest --job-id=my_run --bucket=my-bucket --account-id=env:R2D1_ACCOUNT_ID --access-key=env:R2D1_R2_ACCESS_KEY --secret-key=env:R2D1_R2_SECRET_KEY --api-token=env:R2D1_API_TOKEN --d1-database-id=env:R2D1_D1_DATABASE_ID epoch
   */
  @func({ cache: 'never' })
  async latest(
    /** The training job's ID. */
    jobId: string,
    /** The R2 bucket. */
    bucket: string,
    /** Cloudflare account ID (builds the R2 endpoint, addresses D1). */
    accountId: Secret,
    /** R2 API token access key ID. */
    accessKey: Secret,
    /** R2 API token secret access key. */
    secretKey: Secret,
    /** R2 (S3 API) endpoint URL; default https://<account-id>.r2.cloudflarestorage.com. */
    endpoint?: string,
    /** Session token of temporary (scoped) R2 credentials. */
    sessionToken?: Secret,
    /** Cloudflare API token with D1 edit permission; leave out, with d1DatabaseId, for R2-only mode. */
    apiToken?: Secret,
    /** D1 database ID. */
    d1DatabaseId?: Secret,
    /** D1 REST API base URL; default https://api.cloudflare.com/client/v4. */
    d1ApiUrl?: string,
  ): Promise<Checkpoint> {
    return surfaced(async () => {
      const { logger } = boundary();
      const job = checkedJobId(jobId);
      const creds = { bucket, accountId, accessKey, secretKey, endpoint, sessionToken, apiToken, d1DatabaseId, d1ApiUrl };
      const fetcher = new Fetcher(await backends(creds, logger), { logger });
      try {
        const found = await fetcher.catalog.latest(job);
        const result = new Checkpoint();
        if (!found) return result;
        const { manifest } = found;
        return Object.assign(result, {
          found: true,
          name: manifest.name,
          epoch: manifest.epoch,
          key: manifest.prefix,
          timestamp: manifest.timestamp,
          metadata: JSON.stringify(manifest.metadata ?? {}),
        });
      } finally {
        fetcher.close();
      }
    });
  }

  /**
   * Ships every complete checkpoint in a directory that is not committed yet (a flush).
   *
   * The directory holds checkpoint folders with their sidecars (<name>/ + <name>.json, the sidecar
   * written last). Each is uploaded, verified and committed, its D1 row recorded; what is already
   * committed is not shipped again. The call fails, naming each one and why, if any checkpoint did
   * not ship.
   *
   * Example:
   *   dagger call ship --checkpoints=./checkpoints --job-id=my_run --bucket=my-bucket --account-id=env:R2D1_ACCOUNT_ID --access-key=env:R2D1_R2_ACCESS_KEY --secret-key=env:R2D1_R2_SECRET_KEY --api-token=env:R2D1_API_TOKEN --d1-database-id=env:R2D1_D1_DATABASE_ID shipped name
   */
  @func({ cache: 'never' })
  async ship(
    /** The directory of checkpoints (folders plus their sidecars). */
    checkpoints: Directory,
    /** The training job's ID. */
    jobId: string,
    /** The R2 bucket. */
    bucket: string,
    /** Cloudflare account ID (builds the R2 endpoint, addresses D1). */
    accountId: Secret,
    /** R2 API token access key ID. */
    accessKey: Secret,
    /** R2 API token secret access key. */
    secretKey: Secret,
    /** R2 (S3 API) endpoint URL; default https://<account-id>.r2.cloudflarestorage.com. */
    endpoint?: string,
    /** Session token of temporary (scoped) R2 credentials. */
    sessionToken?: Secret,
    /** Cloudflare API token with D1 edit permission; leave out, with d1DatabaseId, for R2-only mode. */
    apiToken?: Secret,
    /** D1 database ID. */
    d1DatabaseId?: Secret,
    /** D1 REST API base URL; default https://api.cloudflare.com/client/v4. */
    d1ApiUrl?: string,
  ): Promise<ShipReport> {
    return surfaced(async () => {
      const { logger } = boundary();
      const job = checkedJobId(jobId);
      const creds = { bucket, accountId, accessKey, secretKey, endpoint, sessionToken, apiToken, d1DatabaseId, d1ApiUrl };
      const courier = new Courier(await backends(creds, logger), { logger });
      // In the engine, export writes into this function's own container, not to the caller's host.
      const dir = await mkdtemp(join(tmpdir(), 'r2d1-ship-'));
      try {
        await checkpoints.export(dir);
        const report = await courier.ship(dir, { jobId: job, timeout: SHIP_TIMEOUT_S });
        if (!report.ok) {
          const each = report.failed.map((f) => `${f.name}${f.epoch !== undefined ? ` (epoch ${f.epoch})` : ''}: ${f.reason}`);
          throw new Error(`${report.failed.length} checkpoint(s) not shipped: ${each.join('; ')}`);
        }
        for (const name of report.d1Pending) logger.warn(`D1 row for ${name} not written yet (the checkpoint is committed in the bucket)`);
        return Object.assign(new ShipReport(), {
          shipped: report.shipped.map((s) =>
            Object.assign(new ShippedCheckpoint(), { name: s.name, epoch: s.epoch, bytes: s.bytes, files: s.files, key: s.key, seconds: s.seconds }),
          ),
          d1Pending: report.d1Pending,
        });
      } finally {
        courier.close();
        await rm(dir, { recursive: true, force: true });
      }
    });
  }

  /**
   * Runs a training command in your container with the r2d1 courier alongside.
   *
   * The CLI's run mode: with resume, pull the job's latest checkpoint into checkpointPath first;
   * watch checkpointPath and ship each checkpoint as training writes it; when the command exits,
   * flush, and fail if the command failed or a checkpoint did not ship. Only the bundled r2d1 CLI
   * and a Node binary are added, as mounts under /r2d1 (the image needs glibc, as Debian, Ubuntu and
   * CUDA images have). The returned container holds what training wrote, checkpointPath included.
   *
   * Example:
   *   dagger call train --container=ghcr.io/acme/trainer:latest --args=python,train.py --job-id=my_run --checkpoint-path=/checkpoints --resume --bucket=my-bucket --account-id=env:R2D1_ACCOUNT_ID --access-key=env:R2D1_R2_ACCESS_KEY --secret-key=env:R2D1_R2_SECRET_KEY --api-token=env:R2D1_API_TOKEN --d1-database-id=env:R2D1_D1_DATABASE_ID directory --path=/checkpoints export --path=./checkpoints
   */
  @func({ cache: 'never' })
  async train(
    /** Your training container: the command runs in it. */
    container: Container,
    /** The training command and its arguments, e.g. python,train.py. */
    args: string[],
    /** The training job's ID. */
    jobId: string,
    /** Where training writes checkpoints in the container (the courier watches it). */
    checkpointPath: string,
    /** The R2 bucket. */
    bucket: string,
    /** Cloudflare account ID (builds the R2 endpoint, addresses D1). */
    accountId: Secret,
    /** R2 API token access key ID. */
    accessKey: Secret,
    /** R2 API token secret access key. */
    secretKey: Secret,
    /** Pull the job's latest checkpoint into checkpointPath before training (a fresh start pulls nothing). */
    resume: boolean = false,
    /** R2 (S3 API) endpoint URL; default https://<account-id>.r2.cloudflarestorage.com. */
    endpoint?: string,
    /** Session token of temporary (scoped) R2 credentials. */
    sessionToken?: Secret,
    /** Cloudflare API token with D1 edit permission; leave out, with d1DatabaseId, for R2-only mode. */
    apiToken?: Secret,
    /** D1 database ID. */
    d1DatabaseId?: Secret,
    /** D1 REST API base URL; default https://api.cloudflare.com/client/v4. */
    d1ApiUrl?: string,
  ): Promise<Container> {
    return surfaced(async () => {
      const { moduleFile, imageFile } = boundary();
      const job = checkedJobId(jobId);
      if (!args || args.length === 0) throw new Error('missing the training command (for example --args=python,train.py)');
      if (!checkpointPath) throw new Error('missing the checkpoint path (for example --checkpoint-path=/checkpoints)');
      const creds: Credentials = { bucket, accountId, accessKey, secretKey, endpoint, sessionToken, apiToken, d1DatabaseId, d1ApiUrl };
      let ctr = container
        .withMountedFile(NODE_PATH, imageFile(NODE_IMAGE, '/usr/local/bin/node'))
        .withMountedFile(CLI_PATH, moduleFile(CLI_SOURCE));
      for (const [key, variable] of Object.entries(PLAIN_VARS)) {
        const value = creds[key as keyof typeof PLAIN_VARS];
        if (value) ctr = ctr.withEnvVariable(variable, value);
      }
      for (const [key, variable] of Object.entries(SECRET_VARS)) {
        const secret = creds[key as keyof typeof SECRET_VARS];
        if (secret) ctr = ctr.withSecretVariable(variable, secret);
      }
      // Training ships to the bucket, an effect outside the container: never reuse a cached run.
      ctr = ctr.withEnvVariable('R2D1_DAGGER_RUN', randomBytes(8).toString('hex'));
      const pull = resume ? ['--pull', `r2://jobs/${job}/latest`, '--dest', checkpointPath] : [];
      return ctr.withExec([NODE_PATH, CLI_PATH, 'run', ...pull, '--watch', checkpointPath, '--job-id', job, '--', ...args]);
    });
  }
}
