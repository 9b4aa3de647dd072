import { createHash } from 'node:crypto';
import { join, resolve, sep } from 'node:path';
import { R2d1Error, describeError } from '../src/core/errors.js';
import { checkSegment, findCollision, localPathUnder, safeRelativePath } from '../src/core/keys.js';
import {
  MANIFEST_FORMAT,
  compareLatestFirst,
  compareSlotNewestFirst,
  jobPrefix,
  manifestKey,
  newVersion,
  parseManifest,
  parseManifestKey,
  parseR2Uri,
  parseVersion,
  slotPrefix,
  versionPrefix,
  type Manifest,
  type VersionRef,
} from '../src/core/layout.js';
import { parseSidecar } from '../src/core/sidecar.js';

function thrown(fn: () => unknown): R2d1Error {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(R2d1Error);
    return err as R2d1Error;
  }
  throw new Error('expected a throw');
}

const hex64 = (s: string) => createHash('sha256').update(s).digest('hex');

describe('safeRelativePath', () => {
  it.each(['checkpoint.pt', 'a/b/c.bin', 'model.safetensors', 'dir/.hidden', 'a..b/c..'])('accepts %j', (p) => {
    expect(safeRelativePath(p, 'file')).toBe(p);
  });

  it('returns the NFC form', () => {
    expect(safeRelativePath('cafe\u0301/x', 'file')).toBe('caf\u00e9/x');
  });

  it.each([
    ['..', /\.\./],
    ['../x', /\.\./],
    ['a/../../x', /\.\./],
    ['a/..', /\.\./],
    ['/etc/passwd', /absolute/],
    ['C:x', /absolute/],
    ['c:/windows/x', /absolute/],
    ['a\\b', /backslash/],
    ['..\\x', /backslash/],
    ['a\u0000b', /control/],
    ['a\nb', /control/],
    ['a\u001fb', /control/],
    ['a\u007fb', /control/],
    ['', /empty/],
    ['a//b', /empty/],
    ['a/', /empty/],
    ['./a', /empty or \. segment/],
    ['a/./b', /empty or \. segment/],
  ])('refuses %j', (p, why) => {
    const err = thrown(() => safeRelativePath(p, 'object key'));
    expect(err.code).toBe('UNSAFE_KEY');
    expect(err.message).toMatch(why);
    expect(err.message).toContain('object key');
    expect(err.retryable).toBe(false);
  });
});

describe('localPathUnder', () => {
  const root = resolve('/tmp/r2d1-root');

  it('joins a safe path under the root', () => {
    expect(localPathUnder(root, 'a/b.pt', 'file')).toBe(join(root, 'a', 'b.pt'));
    expect(localPathUnder(`${root}/`, 'x', 'file')).toBe(join(root, 'x'));
  });

  it.each(['..', '../sibling', 'a/../../x', '/etc/passwd', 'C:x', 'a\\..\\..\\x', ''])('never resolves %j outside the root', (p) => {
    const err = thrown(() => localPathUnder(root, p, 'file'));
    expect(err.code).toBe('UNSAFE_KEY');
  });

  it('every accepted path stays strictly under the root', () => {
    for (const p of ['a', 'a/b', 'a..', '...', 'a/...', '.x/y']) {
      const target = localPathUnder(root, p, 'file');
      expect(target.startsWith(root + sep)).toBe(true);
    }
  });
});

describe('checkSegment', () => {
  it.each(['my_run', 'slot_0', 'run-1.2'])('accepts %j', (s) => expect(checkSegment(s, 'job id')).toBe(s));
  it.each(['', '.', '..', '.hidden', 'a/b', 'a\\b', 'a\u0000', 'x'.repeat(201)])('refuses %j', (s) => {
    const err = thrown(() => checkSegment(s, 'job id'));
    expect(err.code).toBe('BAD_INPUT');
    expect(err.message).toContain('job id');
  });
});

describe('findCollision', () => {
  it('finds NFC/NFD spellings of the same name', () => {
    const nfd = 'cafe\u0301.pt';
    const nfc = 'caf\u00e9.pt';
    expect(findCollision(['a.pt', nfc, 'b.pt', nfd])).toEqual([nfc, nfd]);
    expect(findCollision(['d/' + nfd, 'd/' + nfc])).toEqual(['d/' + nfd, 'd/' + nfc]);
  });

  it('finds exact duplicates', () => {
    expect(findCollision(['x', 'y', 'x'])).toEqual(['x', 'x']);
  });

  it('finds a file that is also a directory of another path', () => {
    expect(findCollision(['model', 'model/weights.bin'])).toEqual(['model', 'model/weights.bin']);
    expect(findCollision(['a/b/c', 'a/b'])).toEqual(['a/b', 'a/b/c']);
    expect(findCollision(['x/a/b/c', 'x/a'])).toEqual(['x/a', 'x/a/b/c']);
    // in NFD vs NFC too
    expect(findCollision(['caf\u00e9', 'cafe\u0301/x'])).toEqual(['caf\u00e9', 'caf\u00e9/x']);
  });

  it('returns undefined when every path is distinct', () => {
    expect(findCollision([])).toBeUndefined();
    expect(findCollision(['a/b', 'a/c', 'ab', 'a.b', 'a/bc/d', 'a/b.d'])).toBeUndefined();
  });
});

describe('parseR2Uri', () => {
  it('r2://jobs/<id>/latest', () => {
    expect(parseR2Uri('r2://jobs/x/latest')).toEqual({ kind: 'latest', jobId: 'x' });
    expect(parseR2Uri('r2://jobs/my_run/latest/')).toEqual({ kind: 'latest', jobId: 'my_run' });
  });

  it('r2://jobs/<id>/<name>', () => {
    expect(parseR2Uri('r2://jobs/x/slot_0')).toEqual({ kind: 'checkpoint', jobId: 'x', name: 'slot_0' });
  });

  it('r2://<prefix>', () => {
    expect(parseR2Uri('r2://datasets/mnist')).toEqual({ kind: 'prefix', prefix: 'datasets/mnist/' });
    expect(parseR2Uri('r2://datasets/mnist/')).toEqual({ kind: 'prefix', prefix: 'datasets/mnist/' });
    expect(parseR2Uri('r2://jobs/x')).toEqual({ kind: 'prefix', prefix: 'jobs/x/' });
    expect(parseR2Uri('r2://jobs/x/slot_0/e1-t2-abcdef01')).toEqual({ kind: 'prefix', prefix: 'jobs/x/slot_0/e1-t2-abcdef01/' });
  });

  it.each([
    ['s3://jobs/x/latest', /does not start with r2:\/\//],
    ['jobs/x/latest', /does not start with r2:\/\//],
    ['r2://', /empty/],
    ['r2:///', /empty/],
    ['r2://jobs/../x', /\.\./],
    ['r2://../etc', /\.\./],
    ['r2:///abs', /absolute/],
    ['r2://a//b', /empty/],
    // A branch-name job id: as a plain prefix it would silently read as a fresh start.
    ['r2://jobs/feature/x/latest', /job id "feature\/x" contains "\/"/],
  ])('refuses %j, naming the expected forms', (uri, why) => {
    const err = thrown(() => parseR2Uri(uri));
    expect(err.code).toBe('BAD_INPUT');
    expect(err.message).toContain(JSON.stringify(uri));
    expect(err.message).toMatch(why);
    const shown = describeError(err);
    expect(shown).toContain('r2://jobs/<job-id>/latest');
    expect(shown).toContain('r2://jobs/<job-id>/<name>');
    expect(shown).toContain('r2://<prefix>');
  });

  it('refuses a job id that cannot be a key segment', () => {
    expect(thrown(() => parseR2Uri('r2://jobs/.x/latest')).code).toBe('BAD_INPUT');
  });
});

describe('versions and keys', () => {
  it('newVersion names e<epoch>-t<ms>-<8 hex> and parses back', () => {
    const ref = newVersion('job1', 'slot_0', 42, 1748123456.7);
    expect(ref).toMatchObject({ jobId: 'job1', name: 'slot_0', epoch: 42, timestampMs: 1748123456700 });
    expect(ref.version).toMatch(/^e42-t1748123456700-[0-9a-f]{8}$/);
    expect(parseVersion('job1', 'slot_0', ref.version)).toEqual(ref);
    expect(newVersion('job1', 'slot_0', 42, 1748123456.7).version).not.toBe(ref.version);
    expect(newVersion('j', 'n', 0, -5).timestampMs).toBe(0);
  });

  it('builds the bucket layout', () => {
    const ref = parseVersion('job1', 'slot_0', 'e3-t1000-0123abcd')!;
    expect(jobPrefix('job1')).toBe('jobs/job1/');
    expect(slotPrefix('job1', 'slot_0')).toBe('jobs/job1/slot_0/');
    expect(versionPrefix(ref)).toBe('jobs/job1/slot_0/e3-t1000-0123abcd/');
    expect(manifestKey(ref)).toBe('jobs/job1/slot_0/e3-t1000-0123abcd.manifest.json');
    expect(() => slotPrefix('job1', '../x')).toThrow(R2d1Error);
  });

  it('parseVersion / parseManifestKey refuse other names', () => {
    for (const v of ['e3-t1000-0123abc', 'e3-t1000-0123ABCD', 'e-t1-01234567', 'x3-t1000-0123abcd', 'e3-t1000-0123abcd/']) {
      expect(parseVersion('j', 'n', v)).toBeUndefined();
    }
    expect(parseManifestKey('j', 'n', 'jobs/j/n/e3-t1000-0123abcd.manifest.json')).toMatchObject({ epoch: 3, timestampMs: 1000 });
    expect(parseManifestKey('j', 'n', 'jobs/j/n/e3-t1000-0123abcd/file.pt')).toBeUndefined();
    expect(parseManifestKey('j', 'n', 'jobs/j/other/e3-t1000-0123abcd.manifest.json')).toBeUndefined();
    expect(parseManifestKey('j', 'n', 'jobs/j/n/sub/e3-t1000-0123abcd.manifest.json')).toBeUndefined();
  });

  const v = (epoch: number, ms: number, hex = '00000000'): VersionRef => parseVersion('j', 'n', `e${epoch}-t${ms}-${hex}`)!;

  it('compareLatestFirst: highest epoch first, later timestamp breaks ties, then the version name', () => {
    const list = [v(2, 500), v(10, 100), v(9, 900), v(10, 200), v(10, 200, 'ffffffff'), v(1, 99999)];
    expect(list.sort(compareLatestFirst).map((r) => r.version)).toEqual([
      'e10-t200-ffffffff',
      'e10-t200-00000000',
      'e10-t100-00000000',
      'e9-t900-00000000',
      'e2-t500-00000000',
      'e1-t99999-00000000',
    ]);
  });

  it('compareSlotNewestFirst: latest timestamp first (a restarted run at a lower epoch wins), then epoch', () => {
    const list = [v(50, 1000), v(2, 3000), v(9, 2000), v(3, 3000), v(3, 3000, 'ffffffff')];
    expect(list.sort(compareSlotNewestFirst).map((r) => r.version)).toEqual([
      'e3-t3000-ffffffff',
      'e3-t3000-00000000',
      'e2-t3000-00000000',
      'e9-t2000-00000000',
      'e50-t1000-00000000',
    ]);
  });
});

describe('parseManifest', () => {
  const ref = parseVersion('job1', 'slot_0', 'e42-t1748123456700-0123abcd')!;
  const valid = (): Manifest => ({
    format: MANIFEST_FORMAT,
    jobId: 'job1',
    name: 'slot_0',
    epoch: 42,
    timestamp: 1748123456.7,
    metadata: { loss: 0.043 },
    version: ref.version,
    prefix: versionPrefix(ref),
    sidecarSha256: hex64('sidecar'),
    sidecar: '{"name":"slot_0","epoch":42}',
    files: [
      { path: 'checkpoint.pt', size: 10, sha256: hex64('a') },
      { path: 'sub/config.json', size: 0, sha256: hex64('b') },
    ],
    bytes: 10,
    committedAt: '2025-05-24T00:00:00.000Z',
  });
  const text = (patch: Record<string, unknown>) => JSON.stringify({ ...valid(), ...patch });

  const invalid = (t: string, why: RegExp | string, code = 'VERIFY') => {
    const err = thrown(() => parseManifest(t, ref));
    expect(err.code).toBe(code);
    expect(err.message).toMatch(why);
    return err;
  };

  it('accepts a valid manifest', () => {
    expect(parseManifest(JSON.stringify(valid()), ref)).toEqual(valid());
  });

  it('rejects non-JSON, naming the manifest key', () => {
    const err = invalid('{"format": "r2d1-manif', /not JSON/);
    expect(err.message).toContain(manifestKey(ref));
    invalid('', /not JSON/);
  });

  it('rejects a wrong format', () => {
    invalid(text({ format: 'r2d1-manifest/2' }), /format is not r2d1-manifest\/1/);
    invalid('null', /format/);
    invalid('[1]', /format/);
    invalid('"r2d1-manifest/1"', /format/);
  });

  it.each([
    ['jobId', { jobId: 'job2' }],
    ['name', { name: 'slot_1' }],
    ['version', { version: 'e42-t1748123456700-ffffffff' }],
    ['prefix', { prefix: 'jobs/job1/slot_0/other/' }],
    ['prefix without slash', { prefix: 'jobs/job1/slot_0/e42-t1748123456700-0123abcd' }],
  ])('rejects a mismatched %s', (_label, patch) => {
    invalid(text(patch), /another job, checkpoint or version/);
  });

  it('rejects missing epoch, timestamp or sidecar', () => {
    invalid(text({ epoch: 1.5 }), /epoch, timestamp or sidecar/);
    invalid(text({ epoch: '42' }), /epoch, timestamp or sidecar/);
    invalid(text({ timestamp: undefined }), /epoch, timestamp or sidecar/);
    invalid(text({ sidecar: 3 }), /epoch, timestamp or sidecar/);
  });

  it('rejects bad file entries', () => {
    invalid(text({ files: 'checkpoint.pt' }), /files is not a list/);
    invalid(text({ files: [{ path: 'a', size: 1, sha256: 'abc' }] }), /needs path, size and sha256/);
    invalid(text({ files: [{ path: 'a', size: 1, sha256: hex64('x').toUpperCase() }] }), /needs path, size and sha256/);
    invalid(text({ files: [{ path: 'a', size: 1, sha256: `${hex64('x')}0` }] }), /needs path, size and sha256/);
    invalid(text({ files: [{ path: 'a', size: -1, sha256: hex64('x') }] }), /needs path, size and sha256/);
    invalid(text({ files: [{ path: 'a', size: 1.5, sha256: hex64('x') }] }), /needs path, size and sha256/);
    invalid(text({ files: [{ size: 1, sha256: hex64('x') }] }), /needs path, size and sha256/);
    invalid(text({ files: [null] }), /needs path, size and sha256/);
  });

  it.each(['../escape.pt', '/etc/passwd', 'a\\b', 'a//b', 'C:x', 'a/\u0000'])('rejects the unsafe path %j', (path) => {
    const err = thrown(() => parseManifest(text({ files: [{ path, size: 1, sha256: hex64('x') }] }), ref));
    expect(['UNSAFE_KEY', 'VERIFY']).toContain(err.code);
    expect(err.message).toContain(manifestKey(ref));
  });

  it('rejects colliding paths', () => {
    const files = (...paths: string[]) => paths.map((path) => ({ path, size: 1, sha256: hex64(path) }));
    invalid(text({ files: files('caf\u00e9.pt', 'cafe\u0301.pt') }), /collide/);
    invalid(text({ files: files('model', 'model/w.bin') }), /collide/);
    invalid(text({ files: files('x', 'x') }), /collide/);
  });
});

describe('parseSidecar', () => {
  const seedExample = `{
    "name":      "slot_0",
    "epoch":     42,
    "timestamp": 1748123456.7,
    "files":     ["checkpoint.pt", "config.json"],
    "metadata":  {"loss": 0.043}
}`;

  const bad = (text: string, why: RegExp, fileName = 'slot_0.json') => {
    const err = thrown(() => parseSidecar(text, fileName, 1000));
    expect(err.code).toBe('SIDECAR');
    expect(err.message).toContain(fileName);
    expect(err.message).toMatch(why);
    expect(err.hint).toContain('"name"');
    return err;
  };

  it('accepts the seed README example', () => {
    expect(parseSidecar(seedExample, 'slot_0.json', 1000)).toEqual({
      name: 'slot_0',
      epoch: 42,
      timestamp: 1748123456.7,
      files: ['checkpoint.pt', 'config.json'],
      metadata: { loss: 0.043 },
    });
  });

  it('falls back to the given timestamp (the mtime) when timestamp is missing or null', () => {
    expect(parseSidecar('{"name":"slot_0","epoch":1}', 'slot_0.json', 1234.5)).toEqual({
      name: 'slot_0',
      epoch: 1,
      timestamp: 1234.5,
      files: undefined,
      metadata: {},
    });
    expect(parseSidecar('{"epoch":1,"timestamp":null}', 'slot_0.json', 99).timestamp).toBe(99);
  });

  it('takes the name from the file when the sidecar has none', () => {
    expect(parseSidecar('{"epoch": 0}', 'best.json', 1).name).toBe('best');
  });

  it('truncated JSON is a retryable SIDECAR error naming the file', () => {
    const err = bad(seedExample.slice(0, 40), /not valid JSON/);
    expect(err.retryable).toBe(true);
  });

  it('an empty file is a SIDECAR error naming the file', () => {
    bad('', /empty/);
    bad('  \n', /empty/);
  });

  it('a JSON value that is not an object is refused', () => {
    bad('[1,2]', /not a JSON object/);
    bad('null', /not a JSON object/);
    bad('42', /not a JSON object/);
  });

  it('a name that does not match the file is refused', () => {
    bad(seedExample, /"name" is "slot_0" but the file is slot_1\.json/, 'slot_1.json');
    bad('{"name": 7, "epoch": 1}', /"name" is not a string/);
  });

  it.each([-1, 1.5, '42', null, 2 ** 53])('epoch %p is refused', (epoch) => {
    bad(JSON.stringify({ name: 'slot_0', epoch, timestamp: 1 }), /"epoch" must be a non-negative integer/);
  });

  it('epoch 0 is fine', () => {
    expect(parseSidecar('{"epoch":0,"timestamp":0}', 'slot_0.json', 5)).toMatchObject({ epoch: 0, timestamp: 0 });
  });

  it.each([-1, '1748123456.7', true])('timestamp %p is refused', (timestamp) => {
    bad(JSON.stringify({ epoch: 1, timestamp }), /"timestamp"/);
  });

  it.each([['checkpoint.pt'], [{ a: 1 }], [[1, 2]], [['ok', 3]], [null]])('files %p (not a list of names) is refused', (files) => {
    bad(JSON.stringify({ epoch: 1, files }), /"files" must be a list of file names/);
  });

  it('unsafe names in files are refused, naming the sidecar', () => {
    const err = thrown(() => parseSidecar(JSON.stringify({ epoch: 1, files: ['../x'] }), 'slot_0.json', 1));
    expect(err.message).toContain('slot_0.json');
  });

  it.each([[[1]], ['text'], [5]])('metadata %p (not an object) is refused', (metadata) => {
    bad(JSON.stringify({ epoch: 1, metadata }), /"metadata" must be a JSON object/);
  });
});
