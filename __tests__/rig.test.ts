import { randomBytes } from 'node:crypto';
import { existsSync, rmSync, statSync } from 'node:fs';
import {
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
} from '@aws-sdk/client-s3';
import { d1Query, d1QueryUrl, d1Request, makeTempDir, rig, rigEnv, rigS3Client, uniqueJobId } from './rig/rig.js';

const s3 = rigS3Client;

describe('rig description', () => {
  it('is readable from the file globalSetup wrote', () => {
    const r = rig();
    expect(process.env.R2D1_RIG_FILE).toBeTruthy();
    expect(r.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);
    expect(r.s3Endpoint).toBe(`${r.url}cdn-cgi/local/r2/s3`);
    expect(r.d1ApiUrl).toBe(`${r.url}client/v4`);
    expect(r.bucket).toBe('r2d1-test');
  });

  it('rigEnv maps the rig onto the project variables, with overrides', () => {
    const r = rig();
    expect(rigEnv()).toEqual({
      R2D1_ACCOUNT_ID: r.accountId,
      R2D1_R2_BUCKET: r.bucket,
      R2D1_R2_ACCESS_KEY: r.accessKeyId,
      R2D1_R2_SECRET_KEY: r.secretAccessKey,
      R2D1_R2_ENDPOINT_URL: r.s3Endpoint,
      R2D1_API_TOKEN: r.apiToken,
      R2D1_D1_DATABASE_ID: r.databaseId,
      R2D1_D1_API_URL: r.d1ApiUrl,
    });
    const env = rigEnv({ R2D1_API_TOKEN: undefined, R2D1_R2_BUCKET: 'other', EXTRA: 'x' });
    expect(env).not.toHaveProperty('R2D1_API_TOKEN');
    expect(env.R2D1_R2_BUCKET).toBe('other');
    expect(env.EXTRA).toBe('x');
  });

  it('uniqueJobId and makeTempDir give fresh values', async () => {
    expect(uniqueJobId()).toMatch(/^job-[0-9a-z]+-[0-9a-f]{8}$/);
    expect(uniqueJobId('run')).not.toBe(uniqueJobId('run'));
    const a = await makeTempDir('r2d1-rigtest-');
    const b = await makeTempDir('r2d1-rigtest-');
    try {
      expect(a).not.toBe(b);
      expect(existsSync(a) && statSync(a).isDirectory()).toBe(true);
    } finally {
      rmSync(a, { recursive: true, force: true });
      rmSync(b, { recursive: true, force: true });
    }
  });
});

describe('R2 over the S3 API', () => {
  const client = s3();
  afterAll(() => client.destroy());

  it('puts, gets and lists objects', async () => {
    const { bucket } = rig();
    const prefix = `${uniqueJobId()}/`;
    await client.send(new PutObjectCommand({ Bucket: bucket, Key: `${prefix}a.txt`, Body: 'hello r2', ContentType: 'text/plain' }));
    await client.send(new PutObjectCommand({ Bucket: bucket, Key: `${prefix}dir/b.bin`, Body: new Uint8Array([1, 2, 3]) }));

    const got = await client.send(new GetObjectCommand({ Bucket: bucket, Key: `${prefix}a.txt` }));
    expect(await got.Body!.transformToString()).toBe('hello r2');
    expect(got.ContentType).toBe('text/plain');

    const listed = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix }));
    expect(listed.Contents?.map((o) => [o.Key, o.Size])).toEqual([
      [`${prefix}a.txt`, 8],
      [`${prefix}dir/b.bin`, 3],
    ]);
  });

  it('round-trips a body above the SDK 100-continue threshold (expectContinueHeader: false)', async () => {
    const { bucket } = rig();
    const key = `${uniqueJobId()}/big.bin`;
    const data = randomBytes(3 * 1024 * 1024);
    await client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: data }));
    const got = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    expect(Buffer.from(await got.Body!.transformToByteArray()).equals(data)).toBe(true);
  });

  it('rejects a wrong secret with 403 SignatureDoesNotMatch', async () => {
    const r = rig();
    const bad = s3({ credentials: { accessKeyId: r.accessKeyId, secretAccessKey: 'not-the-secret' } });
    try {
      const err = await bad
        .send(new PutObjectCommand({ Bucket: r.bucket, Key: `${uniqueJobId()}/x`, Body: 'x' }))
        .then(() => undefined, (e: unknown) => e);
      expect(err).toMatchObject({ name: 'SignatureDoesNotMatch', $metadata: { httpStatusCode: 403 } });
    } finally {
      bad.destroy();
    }
  });
});

describe('D1 REST API stand-in', () => {
  it('creates a table and index in one request, inserts with params and selects rows', async () => {
    const table = `t_${uniqueJobId('d1').replace(/-/g, '_')}`;
    const created = await d1Request({
      sql: `CREATE TABLE ${table} (id INTEGER PRIMARY KEY, name TEXT NOT NULL, size INTEGER); -- comment; with a semicolon
            CREATE INDEX ${table}_name ON ${table}(name);`,
    });
    expect(created.status).toBe(200);
    expect(created.body).toMatchObject({ success: true, errors: [], messages: [] });
    expect(created.body.result).toHaveLength(2);
    expect(created.body.result![0]).toMatchObject({ success: true, results: [] });
    expect(created.body.result![0]!.meta).toHaveProperty('changed_db');

    const inserted = await d1Request({ sql: `INSERT INTO ${table} (name, size) VALUES (?, ?), (?, ?)`, params: ['a;b', 1, "it's", 2] });
    expect(inserted.status).toBe(200);
    expect(inserted.body.result![0]!.meta).toMatchObject({ changes: 2 });

    expect(await d1Query(`SELECT name, size FROM ${table} WHERE size >= ? ORDER BY id`, [1])).toEqual([
      { name: 'a;b', size: 1 },
      { name: "it's", size: 2 },
    ]);
  });

  it('runs a batch body, one result per query', async () => {
    const { status, body } = await d1Request({ batch: [{ sql: 'SELECT ? AS x', params: [1] }, { sql: 'SELECT 2 AS y' }] });
    expect(status).toBe(200);
    expect(body.result!.map((r) => r.results)).toEqual([[{ x: 1 }], [{ y: 2 }]]);
  });

  it('answers 401 to a bad or missing token', async () => {
    const envelope = { success: false, errors: [{ code: 10000, message: 'Authentication error' }], messages: [], result: null };
    expect(await d1Request({ sql: 'SELECT 1' }, { token: 'wrong' })).toEqual({ status: 401, body: envelope });
    expect(await d1Request({ sql: 'SELECT 1' }, { token: null })).toEqual({ status: 401, body: envelope });
  });

  it('answers 400 with code 7500 and D1’s message to bad SQL', async () => {
    const { status, body } = await d1Request({ sql: 'selec 1' });
    expect(status).toBe(400);
    expect(body).toEqual({
      success: false,
      errors: [{ code: 7500, message: 'near "selec": syntax error at offset 0: SQLITE_ERROR' }],
      messages: [],
      result: null,
    });
    const missing = await d1Request({ sql: 'SELECT * FROM no_such_table' });
    expect(missing.status).toBe(400);
    expect(missing.body.errors[0]).toEqual({ code: 7500, message: 'no such table: no_such_table: SQLITE_ERROR' });
  });

  it('answers 404/7404 to an unknown account or database, 400/7400 to a malformed body, 404 elsewhere', async () => {
    const r = rig();
    const wrongDb = await d1Request({ sql: 'SELECT 1' }, { url: `${r.d1ApiUrl}/accounts/${r.accountId}/d1/database/nope/query` });
    expect(wrongDb.status).toBe(404);
    expect(wrongDb.body.errors[0]!.code).toBe(7404);
    const wrongAccount = await d1Request({ sql: 'SELECT 1' }, { url: `${r.d1ApiUrl}/accounts/nope/d1/database/${r.databaseId}/query` });
    expect(wrongAccount.status).toBe(404);
    expect(wrongAccount.body.errors[0]!.code).toBe(7404);

    for (const bad of ['{not json', '[]', { params: [1] }, { sql: 'SELECT ?', params: 1 }, { sql: '  -- nothing' }]) {
      const res = await d1Request(bad);
      expect([res.status, res.body.success, res.body.errors[0]!.code]).toEqual([400, false, 7400]);
    }

    const other = await fetch(`${r.url}client/v4/accounts/${r.accountId}/d1/database`, {
      headers: { authorization: `Bearer ${r.apiToken}` },
    });
    expect(other.status).toBe(404);
    expect(((await other.json()) as { success: boolean }).success).toBe(false);
    expect(d1QueryUrl()).toBe(`${r.d1ApiUrl}/accounts/${r.accountId}/d1/database/${r.databaseId}/query`);
  });
});
