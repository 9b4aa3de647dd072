import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  DEFAULT_D1_API_URL,
  describeConfig,
  loadConfig,
  maskSecret,
  withDotEnv,
  type Config,
  type Env,
  type R2Settings,
} from '../src/core/config.js';
import { R2d1Error, describeError } from '../src/core/errors.js';
import { makeTempDir } from './rig/rig.js';

// Distinctive values, so a leak of any of them into a message is easy to spot.
const SECRET = 'SECRETsecretSECRETsecret0123456789';
const ACCESS = 'ACCESSKEYID0123456789abcdef';
const TOKEN = 'APITOKENvalue0123456789abcdefXYZ';
const SESSION = 'SESSIONtoken0123456789abcdefQRS';

/** A complete R2 + D1 configuration through the R2D1_* variables. */
function fullEnv(overrides: Env = {}): Env {
  const env: Env = {
    R2D1_ACCOUNT_ID: 'acct123',
    R2D1_R2_BUCKET: 'bucket-a',
    R2D1_R2_ACCESS_KEY: ACCESS,
    R2D1_R2_SECRET_KEY: SECRET,
    R2D1_API_TOKEN: TOKEN,
    R2D1_D1_DATABASE_ID: 'db-uuid-1',
    ...overrides,
  };
  for (const k of Object.keys(env)) if (env[k] === undefined) delete env[k];
  return env;
}

function configError(env: Env): R2d1Error {
  try {
    loadConfig(env);
  } catch (err) {
    expect(err).toBeInstanceOf(R2d1Error);
    return err as R2d1Error;
  }
  throw new Error('loadConfig did not throw');
}

const r2 = (config: Config): R2Settings => {
  expect(config.store.kind).toBe('r2');
  return config.store as R2Settings;
};

describe('loadConfig: R2 settings', () => {
  it('reads every R2D1_* variable', () => {
    const config = loadConfig(
      fullEnv({
        R2D1_R2_ENDPOINT_URL: 'https://custom.example.com',
        R2D1_SESSION_TOKEN: SESSION,
        R2D1_D1_API_URL: 'http://127.0.0.1:8787/client/v4',
      }),
    );
    expect(config.store).toEqual({
      kind: 'r2',
      bucket: 'bucket-a',
      endpoint: 'https://custom.example.com',
      accessKeyId: ACCESS,
      secretAccessKey: SECRET,
      sessionToken: SESSION,
    });
    expect(config.d1).toEqual({
      apiUrl: 'http://127.0.0.1:8787/client/v4',
      accountId: 'acct123',
      databaseId: 'db-uuid-1',
      apiToken: TOKEN,
    });
    expect(config.sources).toMatchObject({
      accountId: 'R2D1_ACCOUNT_ID',
      bucket: 'R2D1_R2_BUCKET',
      accessKeyId: 'R2D1_R2_ACCESS_KEY',
      secretAccessKey: 'R2D1_R2_SECRET_KEY',
      endpoint: 'R2D1_R2_ENDPOINT_URL',
      sessionToken: 'R2D1_SESSION_TOKEN',
      apiToken: 'R2D1_API_TOKEN',
      databaseId: 'R2D1_D1_DATABASE_ID',
      d1ApiUrl: 'R2D1_D1_API_URL',
    });
  });

  it('builds the endpoint from the account id when R2D1_R2_ENDPOINT_URL is unset', () => {
    const store = r2(loadConfig(fullEnv({ R2D1_ACCOUNT_ID: 'abc123def' })));
    expect(store.endpoint).toBe('https://abc123def.r2.cloudflarestorage.com');
  });

  it('an explicit endpoint wins over the account id, and then no account id is needed for R2 alone', () => {
    const config = loadConfig(
      fullEnv({
        R2D1_ACCOUNT_ID: undefined,
        R2D1_API_TOKEN: undefined,
        R2D1_D1_DATABASE_ID: undefined,
        R2D1_R2_ENDPOINT_URL: 'http://127.0.0.1:9000/s3',
      }),
    );
    expect(r2(config).endpoint).toBe('http://127.0.0.1:9000/s3');
    expect(loadConfig(fullEnv({ R2D1_R2_ENDPOINT_URL: 'http://e.test' })).store).toMatchObject({ endpoint: 'http://e.test' });
  });

  it('passes R2D1_SESSION_TOKEN through, and leaves it undefined when unset', () => {
    expect(r2(loadConfig(fullEnv({ R2D1_SESSION_TOKEN: SESSION }))).sessionToken).toBe(SESSION);
    expect(r2(loadConfig(fullEnv())).sessionToken).toBeUndefined();
  });

  it('refuses an endpoint that is not an http(s) URL, naming the variable', () => {
    const err = configError(fullEnv({ R2D1_R2_ENDPOINT_URL: 'ftp://nope' }));
    expect(err.code).toBe('CONFIG');
    expect(err.message).toContain('R2D1_R2_ENDPOINT_URL');
  });

  it('treats a blank (whitespace) value as unset', () => {
    const err = configError(fullEnv({ R2D1_R2_BUCKET: '   ' }));
    expect(err.message).toContain('R2D1_R2_BUCKET');
  });
});

describe('loadConfig: aliases', () => {
  const aliasEnv: Env = {
    CLOUDFLARE_ACCOUNT_ID: 'alias-acct',
    R2_BUCKET: 'alias-bucket',
    AWS_ACCESS_KEY_ID: 'alias-access',
    AWS_SECRET_ACCESS_KEY: 'alias-secret',
    CLOUDFLARE_API_TOKEN: 'alias-token',
    D1_DATABASE_ID: 'alias-db',
  };

  it('reads every alias when the R2D1_* variable is absent, and records it as the source', () => {
    const config = loadConfig(aliasEnv);
    expect(config.store).toEqual({
      kind: 'r2',
      bucket: 'alias-bucket',
      endpoint: 'https://alias-acct.r2.cloudflarestorage.com',
      accessKeyId: 'alias-access',
      secretAccessKey: 'alias-secret',
      sessionToken: undefined,
    });
    expect(config.d1).toEqual({ apiUrl: DEFAULT_D1_API_URL, accountId: 'alias-acct', databaseId: 'alias-db', apiToken: 'alias-token' });
    expect(config.sources).toMatchObject({
      accountId: 'CLOUDFLARE_ACCOUNT_ID',
      bucket: 'R2_BUCKET',
      accessKeyId: 'AWS_ACCESS_KEY_ID',
      secretAccessKey: 'AWS_SECRET_ACCESS_KEY',
      apiToken: 'CLOUDFLARE_API_TOKEN',
      databaseId: 'D1_DATABASE_ID',
    });
  });

  it.each([
    ['R2D1_ACCOUNT_ID', 'CLOUDFLARE_ACCOUNT_ID', (c: Config) => c.d1!.accountId],
    ['R2D1_R2_BUCKET', 'R2_BUCKET', (c: Config) => r2(c).bucket],
    ['R2D1_R2_ACCESS_KEY', 'AWS_ACCESS_KEY_ID', (c: Config) => r2(c).accessKeyId],
    ['R2D1_R2_SECRET_KEY', 'AWS_SECRET_ACCESS_KEY', (c: Config) => r2(c).secretAccessKey],
    ['R2D1_API_TOKEN', 'CLOUDFLARE_API_TOKEN', (c: Config) => c.d1!.apiToken],
    ['R2D1_D1_DATABASE_ID', 'D1_DATABASE_ID', (c: Config) => c.d1!.databaseId],
  ])('%s wins over %s', (primary, alias, pick) => {
    const config = loadConfig({ ...aliasEnv, [primary]: 'primary-value', [alias]: 'alias-value' });
    expect(pick(config)).toBe('primary-value');
    expect(Object.values(config.sources)).toContain(primary);
    expect(Object.values(config.sources)).not.toContain(alias);
  });

  it('falls back to the alias when the R2D1_* variable is set but empty', () => {
    expect(r2(loadConfig({ ...aliasEnv, R2D1_R2_BUCKET: '' })).bucket).toBe('alias-bucket');
  });
});

describe('loadConfig: D1 settings', () => {
  it('uses the Cloudflare API by default and strips trailing slashes from R2D1_D1_API_URL', () => {
    expect(loadConfig(fullEnv()).d1!.apiUrl).toBe('https://api.cloudflare.com/client/v4');
    expect(loadConfig(fullEnv({ R2D1_D1_API_URL: 'http://d1.test/client/v4//' })).d1!.apiUrl).toBe('http://d1.test/client/v4');
  });

  it('refuses an R2D1_D1_API_URL that is not http(s)', () => {
    const err = configError(fullEnv({ R2D1_D1_API_URL: 'not a url' }));
    expect(err.code).toBe('CONFIG');
    expect(err.message).toContain('R2D1_D1_API_URL');
  });

  it('without any D1 variable: R2-only mode, d1 undefined', () => {
    const config = loadConfig(fullEnv({ R2D1_API_TOKEN: undefined, R2D1_D1_DATABASE_ID: undefined }));
    expect(config.d1).toBeUndefined();
    expect(config.store.kind).toBe('r2');
  });

  it('a token without a database id is an error naming the missing variable', () => {
    const err = configError(fullEnv({ R2D1_D1_DATABASE_ID: undefined }));
    expect(err.code).toBe('CONFIG');
    expect(err.message).toContain('R2D1_D1_DATABASE_ID');
    expect(err.message).not.toContain('R2D1_API_TOKEN');
    expect(err.message).not.toContain(TOKEN);
  });

  it('a database id without a token is an error naming the missing variable', () => {
    const err = configError(fullEnv({ R2D1_API_TOKEN: undefined }));
    expect(err.code).toBe('CONFIG');
    expect(err.message).toContain('R2D1_API_TOKEN');
    expect(err.message).not.toContain('R2D1_D1_DATABASE_ID');
  });

  it('D1 with an explicit R2 endpoint still needs the account id', () => {
    const err = configError(fullEnv({ R2D1_ACCOUNT_ID: undefined, R2D1_R2_ENDPOINT_URL: 'https://e.test' }));
    expect(err.message).toContain('R2D1_ACCOUNT_ID');
  });
});

describe('loadConfig: R2D1_STORE', () => {
  it('file:///abs selects the file store without any R2 credential', () => {
    const config = loadConfig({ R2D1_STORE: 'file:///var/tmp/r2d1-store' });
    expect(config.store).toEqual({ kind: 'file', root: '/var/tmp/r2d1-store' });
    expect(config.d1).toBeUndefined();
    expect(config.sources.store).toBe('R2D1_STORE');
  });

  it('wins over R2 credentials, and D1 can still be configured beside it', () => {
    const config = loadConfig(fullEnv({ R2D1_STORE: 'file:///srv/store' }));
    expect(config.store).toEqual({ kind: 'file', root: '/srv/store' });
    expect(config.d1?.databaseId).toBe('db-uuid-1');
  });

  it.each(['file://relative/dir', 'file:relative', './store', '/abs/but/not/a/url', 's3://bucket/x', 'http://example.com/x'])(
    '%s is a clear CONFIG error naming R2D1_STORE and the expected form',
    (value) => {
      const err = configError({ R2D1_STORE: value });
      expect(err.code).toBe('CONFIG');
      expect(err.message).toContain('R2D1_STORE');
      expect(err.message).toMatch(/file URL of an absolute directory/);
      expect(err.message).toContain('file:///');
    },
  );
});

describe('loadConfig: errors', () => {
  it('an empty environment gives ONE CONFIG error naming every missing variable', () => {
    let thrown = 0;
    let err: unknown;
    try {
      loadConfig({});
    } catch (e) {
      thrown++;
      err = e;
    }
    expect(thrown).toBe(1);
    expect(err).toBeInstanceOf(R2d1Error);
    const e = err as R2d1Error;
    expect(e.code).toBe('CONFIG');
    expect(e.retryable).toBe(false);
    for (const name of [
      'R2D1_ACCOUNT_ID',
      'CLOUDFLARE_ACCOUNT_ID',
      'R2D1_R2_BUCKET',
      'R2_BUCKET',
      'R2D1_R2_ACCESS_KEY',
      'AWS_ACCESS_KEY_ID',
      'R2D1_R2_SECRET_KEY',
      'AWS_SECRET_ACCESS_KEY',
    ]) {
      expect(e.message).toContain(name);
    }
    // D1 is optional: an empty env does not ask for it.
    expect(e.message).not.toContain('R2D1_API_TOKEN');
    expect(e.hint).toMatch(/\.env/);
  });

  it('several problems at once are reported together', () => {
    const err = configError({ R2D1_ACCOUNT_ID: 'a', R2D1_R2_BUCKET: 'b', R2D1_API_TOKEN: TOKEN });
    expect(err.message).toContain('R2D1_R2_ACCESS_KEY');
    expect(err.message).toContain('R2D1_R2_SECRET_KEY');
    expect(err.message).toContain('R2D1_D1_DATABASE_ID');
  });

  it.each<[string, Env]>([
    ['missing bucket', fullEnv({ R2D1_R2_BUCKET: undefined, R2D1_SESSION_TOKEN: SESSION })],
    ['half D1', fullEnv({ R2D1_D1_DATABASE_ID: undefined, R2D1_SESSION_TOKEN: SESSION })],
    ['bad endpoint', fullEnv({ R2D1_R2_ENDPOINT_URL: 'nope', R2D1_SESSION_TOKEN: SESSION })],
    ['bad D1 URL', fullEnv({ R2D1_D1_API_URL: 'nope', R2D1_SESSION_TOKEN: SESSION })],
    ['bad store', fullEnv({ R2D1_STORE: 'nope', R2D1_SESSION_TOKEN: SESSION })],
  ])('error messages never contain secret values (%s)', (_label, env) => {
    const shown = describeError(configError(env));
    for (const secret of [SECRET, ACCESS, TOKEN, SESSION]) expect(shown).not.toContain(secret);
  });
});

describe('withDotEnv', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await makeTempDir('r2d1-config-');
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('reads a .env file, and a variable already in the environment wins', () => {
    const file = join(dir, '.env');
    writeFileSync(
      file,
      [
        '# r2d1 credentials',
        'R2D1_ACCOUNT_ID=from-file',
        'R2D1_R2_BUCKET="bucket from file"',
        "R2D1_R2_ACCESS_KEY='file-access'",
        'R2D1_R2_SECRET_KEY=file-secret # trailing comment',
        'R2D1_API_TOKEN=file-token',
        'export R2D1_D1_DATABASE_ID=file-db',
        '',
      ].join('\n'),
    );
    const env = withDotEnv({ R2D1_API_TOKEN: 'real-token', OTHER: 'x' }, file);
    expect(env).toMatchObject({
      R2D1_ACCOUNT_ID: 'from-file',
      R2D1_R2_BUCKET: 'bucket from file',
      R2D1_R2_ACCESS_KEY: 'file-access',
      R2D1_R2_SECRET_KEY: 'file-secret',
      R2D1_API_TOKEN: 'real-token',
      R2D1_D1_DATABASE_ID: 'file-db',
      OTHER: 'x',
    });
    // and the result feeds loadConfig
    const config = loadConfig(withDotEnv({ R2D1_R2_BUCKET: 'real-bucket' }, file));
    expect(r2(config).bucket).toBe('real-bucket');
    expect(r2(config).secretAccessKey).toBe('file-secret');
    expect(config.d1).toMatchObject({ apiToken: 'file-token', databaseId: 'file-db' });
  });

  it('returns the environment unchanged when there is no .env file (or it is a directory)', () => {
    const env = { A: '1' };
    expect(withDotEnv(env, join(dir, 'missing.env'))).toEqual({ A: '1' });
    mkdirSync(join(dir, 'adir'));
    expect(withDotEnv(env, join(dir, 'adir'))).toEqual({ A: '1' });
  });
});

describe('describeConfig', () => {
  it('masks every secret and names the source variable of each setting', () => {
    const config = loadConfig({
      CLOUDFLARE_ACCOUNT_ID: 'acct123',
      R2D1_R2_BUCKET: 'bucket-a',
      AWS_ACCESS_KEY_ID: ACCESS,
      R2D1_R2_SECRET_KEY: SECRET,
      R2D1_SESSION_TOKEN: SESSION,
      CLOUDFLARE_API_TOKEN: TOKEN,
      R2D1_D1_DATABASE_ID: 'db-uuid-1',
    });
    const lines = describeConfig(config);
    const text = JSON.stringify(lines);
    for (const secret of [SECRET, ACCESS, TOKEN, SESSION]) expect(text).not.toContain(secret);

    const line = (setting: string) => lines.find((l) => l.setting === setting);
    expect(line('secretAccessKey')).toEqual({ setting: 'secretAccessKey', variable: 'R2D1_R2_SECRET_KEY', value: maskSecret(SECRET) });
    expect(line('secretAccessKey')!.value).toBe(`${SECRET.slice(0, 4)}…${SECRET.slice(-4)}`);
    expect(line('accessKeyId')).toMatchObject({ variable: 'AWS_ACCESS_KEY_ID', value: maskSecret(ACCESS) });
    expect(line('sessionToken')).toMatchObject({ variable: 'R2D1_SESSION_TOKEN', value: maskSecret(SESSION) });
    expect(line('apiToken')).toMatchObject({ variable: 'CLOUDFLARE_API_TOKEN', value: maskSecret(TOKEN) });
    // non-secrets are shown in full
    expect(line('bucket')).toEqual({ setting: 'bucket', variable: 'R2D1_R2_BUCKET', value: 'bucket-a' });
    expect(line('accountId')).toEqual({ setting: 'accountId', variable: 'CLOUDFLARE_ACCOUNT_ID', value: 'acct123' });
    expect(line('databaseId')).toMatchObject({ variable: 'R2D1_D1_DATABASE_ID', value: 'db-uuid-1' });
    expect(line('endpoint')!.value).toBe('https://acct123.r2.cloudflarestorage.com');
    expect(line('d1ApiUrl')).toMatchObject({ variable: '(default)', value: DEFAULT_D1_API_URL });
  });

  it('short secrets are fully hidden', () => {
    expect(maskSecret('short')).toBe('****');
    expect(maskSecret('fifteen-chars-x')).toBe('****');
    const lines = describeConfig(loadConfig(fullEnv({ R2D1_R2_SECRET_KEY: 'tiny-secret' })));
    expect(lines.find((l) => l.setting === 'secretAccessKey')!.value).toBe('****');
    expect(JSON.stringify(lines)).not.toContain('tiny-secret');
  });

  it('describes a file store by its URL', () => {
    const lines = describeConfig(loadConfig({ R2D1_STORE: 'file:///var/tmp/s' }));
    expect(lines).toEqual([{ setting: 'store', variable: 'R2D1_STORE', value: 'file:///var/tmp/s' }]);
  });
});
