/** Every input, output, state and environment name the action uses, in one place. */
export const Inputs = {
  Mode: 'mode',
  Source: 'source',
  Path: 'path',
  JobId: 'job-id',
  PollEvery: 'poll-every',
  Keep: 'keep',
  Timeout: 'timeout',
  Force: 'force',
  Cache: 'cache',
  AccountId: 'account-id',
  Bucket: 'bucket',
  AccessKeyId: 'access-key-id',
  SecretAccessKey: 'secret-access-key',
  SessionToken: 'session-token',
  Endpoint: 'endpoint',
  ApiToken: 'api-token',
  D1DatabaseId: 'd1-database-id',
} as const;

export const Outputs = {
  Found: 'found',
  Epoch: 'epoch',
  Name: 'name',
  LocalDir: 'local-dir',
  Bytes: 'bytes',
  Cached: 'cached',
} as const;

export const State = {
  /** Set by watch-start: the courier's state directory, for post. */
  CourierDir: 'courier-dir',
} as const;

/** Exported by watch-start so later steps (flush) find the courier. */
export const CourierDirEnv = 'R2D1_COURIER_DIR';

export const Modes = ['pull', 'watch-start', 'flush'] as const;
export type Mode = (typeof Modes)[number];

/** Credential inputs and the variable each one stands for (and falls back to). */
export const CredentialInputs = [
  [Inputs.AccountId, 'R2D1_ACCOUNT_ID', false],
  [Inputs.Bucket, 'R2D1_R2_BUCKET', false],
  [Inputs.AccessKeyId, 'R2D1_R2_ACCESS_KEY', true],
  [Inputs.SecretAccessKey, 'R2D1_R2_SECRET_KEY', true],
  [Inputs.SessionToken, 'R2D1_SESSION_TOKEN', true],
  [Inputs.Endpoint, 'R2D1_R2_ENDPOINT_URL', false],
  [Inputs.ApiToken, 'R2D1_API_TOKEN', true],
  [Inputs.D1DatabaseId, 'R2D1_D1_DATABASE_ID', false],
] as const;
