import { jest } from '@jest/globals';
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import nock from 'nock';
import { loadConfig, type D1Settings } from '../src/core/config.js';
import { CHECKPOINTS_SCHEMA, D1Client, type CheckpointRow } from '../src/core/d1.js';
import { R2d1Error, describeError, isRetryable } from '../src/core/errors.js';
import { backoffDelay, withRetry, type Sleep } from '../src/core/retry.js';
import { d1Query, rigEnv, uniqueJobId } from './rig/rig.js';

/*
 * nock activates itself on import and intercepts every socket of this worker while active: it stays off
 * except inside the "D1Client faults (nock)" block, so the real rig answers every other test here.
 * (nock 14 is pinned: nock 15's interceptors need Promise.withResolvers, which Node 20 lacks.)
 */
nock.restore();
afterAll(() => {
  nock.cleanAll();
  nock.enableNetConnect();
  nock.restore();
});

/** The seed README's schema, verbatim. */
const SEED_SCHEMA = `CREATE TABLE IF NOT EXISTS checkpoints (
    job_id    TEXT    NOT NULL,
    name      TEXT    NOT NULL,
    epoch     INTEGER NOT NULL,
    timestamp REAL    NOT NULL,
    r2_prefix TEXT    NOT NULL,
    metadata  TEXT    DEFAULT '{}',
    PRIMARY KEY (job_id, name)
);`;

const squash = (sql: string) => sql.replace(/\s+/g, ' ').replace(/;\s*$/, '').trim();

/** A fetch that counts its calls and forwards them to the real one. */
function countingFetch(): { fetch: typeof fetch; calls: () => number } {
  let n = 0;
  const f = ((input: Parameters<typeof fetch>[0], init?: Parameters<typeof fetch>[1]) => {
    n++;
    return fetch(input, init);
  }) as typeof fetch;
  return { fetch: f, calls: () => n };
}

async function rejection(p: Promise<unknown>): Promise<R2d1Error> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(R2d1Error);
    return err as R2d1Error;
  }
  throw new Error('expected a rejection');
}

const FAST = { attempts: 4, baseDelayMs: 1, maxDelayMs: 5 };
const noSleep: Sleep = async () => undefined;

describe('D1Client against the rig D1 stand-in', () => {
  const settings = (): D1Settings => loadConfig(rigEnv()).d1!;
  const row = (jobId: string, name: string, epoch: number, timestamp: number, extra: Partial<CheckpointRow> = {}): CheckpointRow => ({
    job_id: jobId,
    name,
    epoch,
    timestamp,
    r2_prefix: `jobs/${jobId}/${name}/e${epoch}/`,
    metadata: JSON.stringify({ epoch }),
    ...extra,
  });

  it('the schema is the seed README schema, unchanged', () => {
    expect(squash(CHECKPOINTS_SCHEMA)).toBe(squash(SEED_SCHEMA));
  });

  it('ensureSchema creates the checkpoints table (once per client)', async () => {
    const counting = countingFetch();
    const client = new D1Client(settings(), { fetch: counting.fetch });
    await client.ensureSchema();
    await client.ensureSchema();
    expect(counting.calls()).toBe(1);

    const columns = await d1Query<{ name: string; type: string; notnull: number; dflt_value: string | null; pk: number }>(
      'PRAGMA table_info(checkpoints)',
    );
    expect(columns.map(({ name, type, notnull, dflt_value, pk }) => ({ name, type, notnull, dflt_value, pk }))).toEqual([
      { name: 'job_id', type: 'TEXT', notnull: 1, dflt_value: null, pk: 1 },
      { name: 'name', type: 'TEXT', notnull: 1, dflt_value: null, pk: 2 },
      { name: 'epoch', type: 'INTEGER', notnull: 1, dflt_value: null, pk: 0 },
      { name: 'timestamp', type: 'REAL', notnull: 1, dflt_value: null, pk: 0 },
      { name: 'r2_prefix', type: 'TEXT', notnull: 1, dflt_value: null, pk: 0 },
      { name: 'metadata', type: 'TEXT', notnull: 0, dflt_value: "'{}'", pk: 0 },
    ]);
    // a second client against the existing table is fine too
    await new D1Client(settings()).ensureSchema();
  });

  it('query returns rows and binds parameters', async () => {
    const client = new D1Client(settings());
    expect(await client.query('SELECT ? AS a, ? AS b, ? AS c', ['x', 2, null])).toEqual([{ a: 'x', b: 2, c: null }]);
  });

  it('recordCheckpoint inserts, then upserts the (job, name) row', async () => {
    const client = new D1Client(settings());
    const job = uniqueJobId('d1-upsert');
    await client.recordCheckpoint(row(job, 'slot_0', 1, 1000.5));
    expect(await client.listCheckpoints(job)).toEqual([row(job, 'slot_0', 1, 1000.5)]);

    await client.recordCheckpoint(row(job, 'slot_0', 2, 2000.25, { metadata: '{"loss":0.043}' }));
    const rows = await d1Query<CheckpointRow>('SELECT * FROM checkpoints WHERE job_id = ?', [job]);
    expect(rows).toEqual([row(job, 'slot_0', 2, 2000.25, { metadata: '{"loss":0.043}' })]);
  });

  it('a row with an older timestamp does not overwrite a newer one', async () => {
    const client = new D1Client(settings());
    const job = uniqueJobId('d1-older');
    await client.recordCheckpoint(row(job, 'slot_0', 5, 3000));
    await client.recordCheckpoint(row(job, 'slot_0', 6, 2999.9)); // late write of an older sidecar
    expect(await client.listCheckpoints(job)).toEqual([row(job, 'slot_0', 5, 3000)]);
    await client.recordCheckpoint(row(job, 'slot_0', 4, 3001)); // newer timestamp wins even at a lower epoch
    expect(await client.listCheckpoints(job)).toEqual([row(job, 'slot_0', 4, 3001)]);
  });

  it('listCheckpoints: only that job, highest epoch first, newest timestamp breaking ties', async () => {
    const client = new D1Client(settings());
    const job = uniqueJobId('d1-list');
    const other = uniqueJobId('d1-list-other');
    await client.recordCheckpoint(row(job, 'slot_a', 3, 100));
    await client.recordCheckpoint(row(job, 'slot_b', 10, 200));
    await client.recordCheckpoint(row(job, 'slot_c', 7, 300));
    await client.recordCheckpoint(row(job, 'slot_d', 10, 250));
    await client.recordCheckpoint(row(other, 'slot_z', 99, 999));
    expect((await client.listCheckpoints(job)).map((r) => [r.name, r.epoch])).toEqual([
      ['slot_d', 10],
      ['slot_b', 10],
      ['slot_c', 7],
      ['slot_a', 3],
    ]);
    expect(await client.listCheckpoints(uniqueJobId('d1-none'))).toEqual([]);
  });

  it('a bad token: D1 error with the API message and a hint naming R2D1_API_TOKEN, not retried', async () => {
    const counting = countingFetch();
    const badToken = 'wrong-token-0123456789abcdef';
    const client = new D1Client({ ...settings(), apiToken: badToken }, { fetch: counting.fetch, retry: FAST, sleep: noSleep });
    const err = await rejection(client.query('SELECT 1'));
    expect(err.code).toBe('D1');
    expect(err.message).toContain('HTTP 401');
    expect(err.message).toContain('Authentication error');
    expect(err.message).toContain('10000');
    expect(err.hint).toContain('R2D1_API_TOKEN');
    expect(err.retryable).toBe(false);
    expect(counting.calls()).toBe(1);
    expect(describeError(err)).not.toContain(badToken);
    expect(describeError(err)).not.toContain(settings().apiToken);
  });

  it('an unknown database: D1 error whose hint names the id variables, not retried', async () => {
    const counting = countingFetch();
    const client = new D1Client({ ...settings(), databaseId: 'no-such-db' }, { fetch: counting.fetch, retry: FAST, sleep: noSleep });
    const err = await rejection(client.query('SELECT 1'));
    expect(err.message).toContain('HTTP 404');
    expect(err.message).toContain('no-such-db');
    expect(err.hint).toContain('R2D1_D1_DATABASE_ID');
    expect(err.retryable).toBe(false);
    expect(counting.calls()).toBe(1);
  });

  it('an SQL error carries D1 own message and is not retried', async () => {
    const counting = countingFetch();
    const client = new D1Client(settings(), { fetch: counting.fetch, retry: FAST, sleep: noSleep });
    const err = await rejection(client.query('SELECT * FROM no_such_table_r2d1'));
    expect(err.message).toContain('HTTP 400');
    expect(err.message).toContain('no such table: no_such_table_r2d1');
    expect(err.message).toContain('[7500]');
    expect(err.retryable).toBe(false);
    expect(counting.calls()).toBe(1);
  });

  it('an unreachable D1 is a retryable D1 error naming the URL', async () => {
    // a port that was just free: nothing listens there
    const server = createServer().listen(0, '127.0.0.1');
    await once(server, 'listening');
    const port = (server.address() as AddressInfo).port;
    await new Promise((done) => server.close(done));
    const apiUrl = `http://127.0.0.1:${port}/client/v4`;
    const client = new D1Client(
      { apiUrl, accountId: 'a', databaseId: 'd', apiToken: 't' },
      { retry: { attempts: 2, baseDelayMs: 1, maxDelayMs: 1 }, sleep: noSleep },
    );
    const err = await rejection(client.query('SELECT 1'));
    expect(err.code).toBe('D1');
    expect(err.message).toContain(apiUrl);
    expect(err.message).toMatch(/unreachable: .*ECONNREFUSED/);
    expect(err.retryable).toBe(true);
    expect(err.hint).toContain('R2D1_D1_API_URL');
  });
});

describe('D1Client faults (nock)', () => {
  const ORIGIN = 'http://d1.test';
  const BASE = `${ORIGIN}/client/v4`;
  const PATH = '/client/v4/accounts/acct-1/d1/database/db-1/query';
  const TOKEN = 'tok-0123456789abcdef';
  const settings: D1Settings = { apiUrl: BASE, accountId: 'acct-1', databaseId: 'db-1', apiToken: TOKEN };
  const OK = { success: true, errors: [], messages: [], result: [{ results: [{ n: 1 }], success: true, meta: {} }] };
  const failure = (code: number, message: string) => ({ success: false, errors: [{ code, message }], messages: [], result: null });
  const resetError = () => Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' });

  let delays: number[];
  let requests: number;
  const client = (attempts = 5, extra: { timeoutMs?: number } = {}) =>
    new D1Client(settings, {
      retry: { attempts, baseDelayMs: 1, maxDelayMs: 5 },
      sleep: async (ms) => {
        delays.push(ms);
      },
      ...extra,
    });
  const onRequest = () => {
    requests++;
  };
  const scope = () => nock(ORIGIN).on('request', onRequest);

  beforeAll(() => {
    if (!nock.isActive()) nock.activate();
    nock.disableNetConnect();
  });
  beforeEach(() => {
    delays = [];
    requests = 0;
  });
  afterEach(() => {
    nock.cleanAll();
  });
  afterAll(() => {
    nock.cleanAll();
    nock.enableNetConnect();
    nock.restore();
  });

  it('nock intercepts the global fetch D1Client uses', async () => {
    const s = scope()
      .post(PATH, { sql: 'SELECT 1 AS n', params: [] })
      .matchHeader('authorization', `Bearer ${TOKEN}`)
      .matchHeader('content-type', 'application/json')
      .reply(200, OK);
    await expect(client().query('SELECT 1 AS n')).resolves.toEqual([{ n: 1 }]);
    expect(s.isDone()).toBe(true);
    expect(requests).toBe(1);
  });

  it('429, then 500, then success: succeeds after 3 requests with backoff between them', async () => {
    const s = scope()
      .post(PATH)
      .reply(429, failure(971, 'Please wait and consider throttling your request speed'))
      .post(PATH)
      .reply(500, failure(7500, 'Internal error'))
      .post(PATH)
      .reply(200, OK);
    await expect(client().query('SELECT 1 AS n')).resolves.toEqual([{ n: 1 }]);
    expect(s.isDone()).toBe(true);
    expect(requests).toBe(3);
    expect(delays).toHaveLength(2);
    for (const d of delays) expect(d).toBeLessThanOrEqual(5);
  });

  it('500 forever: fails after `attempts` requests, with the error envelope message', async () => {
    scope().post(PATH).times(3).reply(500, failure(7500, 'D1 storage is overloaded')).post(PATH).reply(200, OK);
    const err = await rejection(client(3).query('SELECT 1'));
    expect(err.code).toBe('D1');
    expect(err.message).toContain('HTTP 500');
    expect(err.message).toContain('D1 storage is overloaded');
    expect(err.retryable).toBe(true);
    expect(requests).toBe(3);
    expect(delays).toHaveLength(2);
    expect(nock.pendingMocks()).toHaveLength(1); // the success that a 4th request would have got
  });

  it('400 error envelope: not retried, API message included', async () => {
    scope().post(PATH).reply(400, failure(7500, 'no such table: x')).post(PATH).reply(200, OK);
    const err = await rejection(client().query('SELECT * FROM x'));
    expect(err.message).toContain('HTTP 400');
    expect(err.message).toContain('no such table: x [7500]');
    expect(err.retryable).toBe(false);
    expect(err.hint).toMatch(/SQL/);
    expect(requests).toBe(1);
    expect(delays).toEqual([]);
    expect(nock.pendingMocks()).toHaveLength(1);
  });

  it('a non-JSON 502 body is retried', async () => {
    const s = scope()
      .post(PATH)
      .reply(502, '<html><body>502 Bad Gateway</body></html>', { 'content-type': 'text/html' })
      .post(PATH)
      .reply(200, OK);
    await expect(client().query('SELECT 1 AS n')).resolves.toEqual([{ n: 1 }]);
    expect(s.isDone()).toBe(true);
    expect(requests).toBe(2);
  });

  it('a non-JSON 502 body, every time: a clear message quoting the body', async () => {
    scope().post(PATH).times(2).reply(502, '<html><body>502 Bad Gateway</body></html>', { 'content-type': 'text/html' });
    const err = await rejection(client(2).query('SELECT 1'));
    expect(err.message).toContain('HTTP 502');
    expect(err.message).toContain('unexpected response');
    expect(err.message).toContain('502 Bad Gateway');
    expect(err.retryable).toBe(true);
    expect(err.hint).toMatch(/retries/);
    expect(requests).toBe(2);
  });

  it('a 200 that is not a success envelope is an error, not an empty result', async () => {
    scope().post(PATH).reply(200, { success: false, errors: [{ code: 7000, message: 'weird' }], result: null });
    const err = await rejection(client().query('SELECT 1'));
    expect(err.message).toContain('weird');
  });

  it('a network error (ECONNRESET) is retried', async () => {
    // (nock quirk: replyWithError({code, message}) with a plain object never settles a fetch; an Error instance works)
    const s = scope().post(PATH).replyWithError(resetError()).post(PATH).reply(200, OK);
    await expect(client().query('SELECT 1 AS n')).resolves.toEqual([{ n: 1 }]);
    expect(s.isDone()).toBe(true);
    expect(requests).toBe(2);
    expect(delays).toHaveLength(1);
  });

  it('network errors every time: a retryable D1 error naming the cause', async () => {
    scope().post(PATH).times(3).replyWithError(resetError());
    const err = await rejection(client(3).query('SELECT 1'));
    expect(err.code).toBe('D1');
    expect(err.message).toContain(BASE);
    expect(err.message).toContain('ECONNRESET');
    expect(err.retryable).toBe(true);
    expect(requests).toBe(3);
  });

  it('ensureSchema is tried again after a failure, then remembered', async () => {
    scope().post(PATH).reply(400, failure(7500, 'boom')).post(PATH).reply(200, OK).post(PATH).reply(200, OK);
    const c = client(1);
    await expect(c.ensureSchema()).rejects.toThrow('boom');
    await expect(c.ensureSchema()).resolves.toBeUndefined();
    await expect(c.ensureSchema()).resolves.toBeUndefined();
    expect(requests).toBe(2);
  });
});

describe('retry', () => {
  afterEach(() => jest.restoreAllMocks());

  it('backoffDelay stays within [ceiling/2, ceiling], ceiling = min(max, base·2^attempt)', () => {
    const policy = { baseDelayMs: 100, maxDelayMs: 3000 };
    for (const r of [0, 0.25, 0.5, 0.999999]) {
      jest.spyOn(Math, 'random').mockReturnValue(r);
      for (let attempt = 0; attempt < 40; attempt++) {
        const ceiling = Math.min(3000, 100 * 2 ** attempt);
        const d = backoffDelay(attempt, policy);
        expect(d).toBeGreaterThanOrEqual(Math.floor(ceiling / 2));
        expect(d).toBeLessThanOrEqual(ceiling);
      }
    }
    jest.spyOn(Math, 'random').mockReturnValue(0);
    expect(backoffDelay(0, policy)).toBe(50);
    expect(backoffDelay(3, policy)).toBe(400);
    jest.spyOn(Math, 'random').mockReturnValue(0.999999);
    expect(backoffDelay(3, policy)).toBe(800);
    expect(backoffDelay(10, policy)).toBe(3000); // capped
    expect(backoffDelay(1000, policy)).toBe(3000); // 2^1000 does not overflow the cap
  });

  it('backoffDelay is random (jittered) with the real Math.random', () => {
    const seen = new Set(Array.from({ length: 50 }, () => backoffDelay(10, { baseDelayMs: 1000, maxDelayMs: 60_000 })));
    expect(seen.size).toBeGreaterThan(1);
  });

  const retryableError = () => new R2d1Error('D1', 'flaky', { retryable: true });

  it('withRetry returns the first success, sleeping between attempts', async () => {
    const sleeps: number[] = [];
    const retries: [number, number][] = [];
    let calls = 0;
    const result = await withRetry(
      async (attempt) => {
        expect(attempt).toBe(calls);
        calls++;
        if (calls < 3) throw retryableError();
        return 'ok';
      },
      {
        attempts: 5,
        baseDelayMs: 10,
        maxDelayMs: 1000,
        sleep: async (ms) => {
          sleeps.push(ms);
        },
        onRetry: (_err, attempt, delay) => retries.push([attempt, delay]),
      },
    );
    expect(result).toBe('ok');
    expect(calls).toBe(3);
    expect(sleeps).toHaveLength(2);
    expect(retries.map(([a]) => a)).toEqual([1, 2]);
    expect(retries.map(([, d]) => d)).toEqual(sleeps);
  });

  it('withRetry stops at once on a non-retryable error', async () => {
    let calls = 0;
    const err = new R2d1Error('D1', 'bad sql', { retryable: false });
    await expect(
      withRetry(
        async () => {
          calls++;
          throw err;
        },
        { attempts: 5, sleep: noSleep },
      ),
    ).rejects.toBe(err);
    expect(calls).toBe(1);
  });

  it('withRetry gives up after `attempts`, throwing the last error', async () => {
    let calls = 0;
    const errors: Error[] = [];
    const p = withRetry(
      async () => {
        calls++;
        const e = retryableError();
        errors.push(e);
        throw e;
      },
      { attempts: 4, baseDelayMs: 1, maxDelayMs: 1, sleep: noSleep },
    );
    await expect(p).rejects.toBeInstanceOf(R2d1Error);
    await p.catch((e) => expect(e).toBe(errors[3]));
    expect(calls).toBe(4);
  });

  it('withRetry with attempts 1 never retries', async () => {
    let calls = 0;
    await expect(
      withRetry(
        async () => {
          calls++;
          throw retryableError();
        },
        { attempts: 1, sleep: noSleep },
      ),
    ).rejects.toThrow('flaky');
    expect(calls).toBe(1);
  });

  it('withRetry honours a custom retryable predicate and an aborted signal', async () => {
    let calls = 0;
    await expect(
      withRetry(
        async () => {
          calls++;
          throw new Error('plain');
        },
        { attempts: 3, sleep: noSleep, retryable: () => true },
      ),
    ).rejects.toThrow('plain');
    expect(calls).toBe(3);

    calls = 0;
    const controller = new AbortController();
    controller.abort();
    await expect(
      withRetry(
        async () => {
          calls++;
          throw retryableError();
        },
        { attempts: 5, sleep: noSleep, signal: controller.signal },
      ),
    ).rejects.toThrow('flaky');
    expect(calls).toBe(1);
  });

  it('isRetryable: 429, 5xx and network errors only', () => {
    expect(isRetryable(new R2d1Error('D1', 'x', { retryable: true }))).toBe(true);
    expect(isRetryable(new R2d1Error('D1', 'x'))).toBe(false);
    expect(isRetryable({ $metadata: { httpStatusCode: 429 } })).toBe(true);
    expect(isRetryable({ $metadata: { httpStatusCode: 503 } })).toBe(true);
    expect(isRetryable({ $metadata: { httpStatusCode: 403 } })).toBe(false);
    expect(isRetryable(Object.assign(new Error('reset'), { code: 'ECONNRESET' }))).toBe(true);
    expect(isRetryable(new Error('wrapped', { cause: Object.assign(new Error('x'), { code: 'UND_ERR_SOCKET' }) }))).toBe(true);
    expect(isRetryable(Object.assign(new Error('t'), { name: 'TimeoutError' }))).toBe(true);
    expect(isRetryable(Object.assign(new Error('nope'), { code: 'ENOENT' }))).toBe(false);
    expect(isRetryable(new TypeError('bug'))).toBe(false);
    expect(isRetryable(undefined)).toBe(false);
  });
});
