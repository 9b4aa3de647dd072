import { readFileSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseEnv } from 'node:util';
import { R2d1Error } from './errors.js';

export type Env = Record<string, string | undefined>;

export interface R2Settings {
  kind: 'r2';
  bucket: string;
  endpoint: string;
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

export interface FileStoreSettings {
  kind: 'file';
  root: string;
}

export interface D1Settings {
  apiUrl: string;
  accountId: string;
  databaseId: string;
  apiToken: string;
}

export interface Config {
  store: R2Settings | FileStoreSettings;
  /** Absent: R2-only mode, no metadata rows. */
  d1?: D1Settings;
  /** For each setting, the variable it was read from (for `r2d1 secrets`). */
  sources: Record<string, string>;
}

export const DEFAULT_D1_API_URL = 'https://api.cloudflare.com/client/v4';

/** Each setting: its variable, then the aliases other tools already use. */
const VARS = {
  accountId: ['R2D1_ACCOUNT_ID', 'CLOUDFLARE_ACCOUNT_ID'],
  bucket: ['R2D1_R2_BUCKET', 'R2_BUCKET'],
  accessKeyId: ['R2D1_R2_ACCESS_KEY', 'AWS_ACCESS_KEY_ID'],
  secretAccessKey: ['R2D1_R2_SECRET_KEY', 'AWS_SECRET_ACCESS_KEY'],
  endpoint: ['R2D1_R2_ENDPOINT_URL'],
  sessionToken: ['R2D1_SESSION_TOKEN'],
  apiToken: ['R2D1_API_TOKEN', 'CLOUDFLARE_API_TOKEN'],
  databaseId: ['R2D1_D1_DATABASE_ID', 'D1_DATABASE_ID'],
  d1ApiUrl: ['R2D1_D1_API_URL'],
  store: ['R2D1_STORE'],
} as const;

type Setting = keyof typeof VARS;

const SECRET_SETTINGS: ReadonlySet<Setting> = new Set(['accessKeyId', 'secretAccessKey', 'sessionToken', 'apiToken']);

/**
 * Reads `.env` (when present) under the real environment: a variable already set wins,
 * as with python-dotenv's default.
 */
export function withDotEnv(env: Env, dotEnvPath = '.env'): Env {
  let text: string;
  try {
    text = readFileSync(dotEnvPath, 'utf8');
  } catch {
    return env;
  }
  const set = Object.fromEntries(Object.entries(env).filter(([, value]) => value !== undefined));
  return { ...parseEnv(text), ...set };
}

export function loadConfig(env: Env): Config {
  const sources: Record<string, string> = {};
  const read = (setting: Setting): string | undefined => {
    for (const name of VARS[setting]) {
      const value = env[name]?.trim();
      if (value) {
        sources[setting] = name;
        return value;
      }
    }
    return undefined;
  };
  const problems: string[] = [];
  const missing = (setting: Setting, why: string) =>
    problems.push(`${VARS[setting].join(' or ')} is not set (${why})`);

  const accountId = read('accountId');
  const storeUrl = read('store');
  let store: Config['store'] | undefined;
  if (storeUrl) {
    store = parseFileStore(storeUrl, problems);
  } else {
    const bucket = read('bucket');
    const accessKeyId = read('accessKeyId');
    const secretAccessKey = read('secretAccessKey');
    const endpointSetting = read('endpoint');
    if (!bucket) missing('bucket', 'the R2 bucket name');
    if (!accessKeyId) missing('accessKeyId', 'an R2 API token access key ID');
    if (!secretAccessKey) missing('secretAccessKey', 'the secret access key of that R2 API token');
    if (!endpointSetting && !accountId) missing('accountId', 'your Cloudflare account ID; or set R2D1_R2_ENDPOINT_URL');
    const endpoint = endpointSetting ?? (accountId ? `https://${accountId}.r2.cloudflarestorage.com` : '');
    if (!endpointSetting && accountId) sources.endpoint = `${sources.accountId} (https://<account>.r2.cloudflarestorage.com)`;
    if (endpointSetting && !isHttpUrl(endpointSetting)) {
      problems.push(`R2D1_R2_ENDPOINT_URL must be an http(s) URL such as https://<account-id>.r2.cloudflarestorage.com`);
    }
    if (bucket && accessKeyId && secretAccessKey && endpoint) {
      store = { kind: 'r2', bucket, endpoint, accessKeyId, secretAccessKey, sessionToken: read('sessionToken') };
    }
  }

  const apiToken = read('apiToken');
  const databaseId = read('databaseId');
  const d1ApiUrl = read('d1ApiUrl') ?? DEFAULT_D1_API_URL;
  let d1: D1Settings | undefined;
  if (apiToken || databaseId) {
    // Half a D1 configuration is a mistake, not a request for R2-only mode.
    if (!apiToken) missing('apiToken', 'a Cloudflare API token with D1 edit permission; or unset the D1 variables for R2-only mode');
    if (!databaseId) missing('databaseId', 'the D1 database ID; or unset the D1 variables for R2-only mode');
    if (!accountId) missing('accountId', 'D1 is addressed through your Cloudflare account ID');
    if (!isHttpUrl(d1ApiUrl)) problems.push(`R2D1_D1_API_URL must be an http(s) URL such as ${DEFAULT_D1_API_URL}`);
    if (apiToken && databaseId && accountId) d1 = { apiUrl: d1ApiUrl.replace(/\/+$/, ''), accountId, databaseId, apiToken };
  }

  if (problems.length > 0 || !store) {
    throw new R2d1Error('CONFIG', `r2d1 is not configured: ${problems.join('; ')}`, {
      hint: 'export the variables, or put them in a .env file in the working directory (`r2d1 secrets` shows what was found)',
    });
  }
  return { store, d1, sources };
}

function parseFileStore(value: string, problems: string[]): FileStoreSettings | undefined {
  const expected = 'R2D1_STORE must be a file URL of an absolute directory, such as file:///var/tmp/r2d1-store';
  if (!value.startsWith('file://')) {
    problems.push(expected);
    return undefined;
  }
  try {
    const root = fileURLToPath(value);
    if (isAbsolute(root)) return { kind: 'file', root: resolve(root) };
  } catch {
    // reported below
  }
  problems.push(expected);
  return undefined;
}

function isHttpUrl(value: string): boolean {
  try {
    const url = new URL(value);
    return url.protocol === 'http:' || url.protocol === 'https:';
  } catch {
    return false;
  }
}

/** `abcd…wxyz` for long secrets, `****` for short ones: enough to tell two keys apart. */
export function maskSecret(value: string): string {
  return value.length >= 16 ? `${value.slice(0, 4)}…${value.slice(-4)}` : '****';
}

export interface ConfigLine {
  setting: string;
  variable: string;
  value: string;
}

/** What `r2d1 secrets` prints: every setting, where it came from, secrets masked. */
export function describeConfig(config: Config): ConfigLine[] {
  const lines: ConfigLine[] = [];
  const add = (setting: Setting, value: string | undefined) => {
    if (value === undefined) return;
    const shown = SECRET_SETTINGS.has(setting) ? maskSecret(value) : value;
    lines.push({ setting, variable: config.sources[setting] ?? '(default)', value: shown });
  };
  const { store, d1 } = config;
  if (store.kind === 'file') {
    add('store', `file://${store.root}`);
  } else {
    add('bucket', store.bucket);
    add('endpoint', store.endpoint);
    add('accessKeyId', store.accessKeyId);
    add('secretAccessKey', store.secretAccessKey);
    add('sessionToken', store.sessionToken);
  }
  if (d1) {
    add('accountId', d1.accountId);
    add('databaseId', d1.databaseId);
    add('apiToken', d1.apiToken);
    add('d1ApiUrl', d1.apiUrl);
  }
  return lines;
}
