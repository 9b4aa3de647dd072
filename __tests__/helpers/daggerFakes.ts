/**
 * Fakes for the Dagger objects the r2d1 module touches, and only those: the module's functions run
 * for real (the r2d1 core against the miniflare rig), while everything that would cross into a
 * Dagger engine is replaced at the boundary:
 *  - `Secret.plaintext` (FakeSecret), `Directory.export` (FakeDirectory: a local directory),
 *    `Container.with*` (FakeContainer: records each call, immutably, as Dagger's objects are);
 *  - the module's DaggerBoundary (dagger/src/boundary.ts): `dag.currentModule().workdir/source` and
 *    `dag.container().from(..).file(..)` become local paths and FakeFiles.
 */
import { cp } from 'node:fs/promises';
import { join } from 'node:path';
import type { Container, Directory, File, Secret } from '@dagger.io/dagger';
import { setBoundary, type DaggerBoundary } from '../../dagger/src/boundary.js';
import { silentLogger, type Logger } from '../../src/index.js';
import { rig } from '../rig/rig.js';

export class FakeSecret {
  /** How many times the module read the plaintext. */
  reads = 0;
  constructor(
    readonly name: string,
    private readonly value: string,
  ) {}

  async plaintext(): Promise<string> {
    this.reads++;
    return this.value;
  }
}

export const fakeSecret = (name: string, value: string): Secret => new FakeSecret(name, value) as unknown as Secret;
export const asFake = (secret: Secret | undefined): FakeSecret => secret as unknown as FakeSecret;

/** A Directory that is a local directory: `export` copies it, as the engine would into the function's container. */
export class FakeDirectory {
  constructor(readonly path: string) {}

  async export(dest: string): Promise<string> {
    await cp(this.path, dest, { recursive: true, preserveTimestamps: true });
    return dest;
  }
}

export const fakeDirectory = (path: string): Directory => new FakeDirectory(path) as unknown as Directory;

/** Where a File came from: the module's own source tree, or a container image. */
export class FakeFile {
  constructor(readonly origin: { module: string } | { image: string; path: string }) {}
}

export interface ContainerCall {
  method: 'withMountedFile' | 'withFile' | 'withEnvVariable' | 'withSecretVariable' | 'withExec';
  args: unknown[];
}

/**
 * A Container that records the calls made on it. Each call returns a new FakeContainer (Dagger's
 * objects are immutable), so a call whose result the module dropped does not show in the end.
 * Methods the module is not expected to use are absent: calling one fails the test.
 */
export class FakeContainer {
  constructor(
    readonly image: string,
    readonly calls: readonly ContainerCall[] = [],
  ) {}

  private with(method: ContainerCall['method'], ...args: unknown[]): FakeContainer {
    return new FakeContainer(this.image, [...this.calls, { method, args }]);
  }

  withMountedFile(path: string, source: File, opts?: unknown) {
    return this.with('withMountedFile', path, source, ...(opts === undefined ? [] : [opts]));
  }

  withFile(path: string, source: File, opts?: unknown) {
    return this.with('withFile', path, source, ...(opts === undefined ? [] : [opts]));
  }

  withEnvVariable(name: string, value: string, opts?: unknown) {
    return this.with('withEnvVariable', name, value, ...(opts === undefined ? [] : [opts]));
  }

  withSecretVariable(name: string, secret: Secret) {
    return this.with('withSecretVariable', name, secret);
  }

  withExec(args: string[], opts?: unknown) {
    return this.with('withExec', args, ...(opts === undefined ? [] : [opts]));
  }
}

export const fakeContainer = (image = 'ghcr.io/acme/trainer:latest'): Container => new FakeContainer(image) as unknown as Container;
export const asFakeContainer = (container: Container): FakeContainer => container as unknown as FakeContainer;

/** The module's engine calls, redirected: the scratch workdir is `scratch`, files are FakeFiles. */
export function fakeBoundary(scratch: string, logger: Logger = silentLogger): DaggerBoundary {
  return {
    scratchDir: () => scratch,
    workdir: (path) => fakeDirectory(join(scratch, path)),
    moduleFile: (path) => new FakeFile({ module: path }) as unknown as File,
    imageFile: (image, path) => new FakeFile({ image, path }) as unknown as File,
    logger,
  };
}

/** Installs fakeBoundary(scratch) in the module; returns the function that puts the engine's back. */
export function useFakeBoundary(scratch: string, logger?: Logger): () => void {
  setBoundary(fakeBoundary(scratch, logger));
  return () => setBoundary();
}

/** The module's credential arguments, pointed at the rig, as `dagger call` would pass them. */
export interface ModuleCredentials {
  bucket: string;
  accountId: Secret;
  accessKey: Secret;
  secretKey: Secret;
  endpoint?: string;
  sessionToken?: Secret;
  apiToken?: Secret;
  d1DatabaseId?: Secret;
  d1ApiUrl?: string;
}

/** Credentials for the rig (R2 + D1); `r2Only` leaves out the D1 pair. Overrides replace fields. */
export function rigCredentials(opts: { r2Only?: boolean } & Partial<ModuleCredentials> = {}): ModuleCredentials {
  const r = rig();
  const { r2Only, ...overrides } = opts;
  return {
    bucket: r.bucket,
    accountId: fakeSecret('accountId', r.accountId),
    accessKey: fakeSecret('accessKey', r.accessKeyId),
    secretKey: fakeSecret('secretKey', r.secretAccessKey),
    endpoint: r.s3Endpoint,
    apiToken: r2Only ? undefined : fakeSecret('apiToken', r.apiToken),
    d1DatabaseId: r2Only ? undefined : fakeSecret('d1DatabaseId', r.databaseId),
    d1ApiUrl: r.d1ApiUrl,
    ...overrides,
  };
}

/** The required credential arguments, in the functions' parameter order. */
export const required = (c: ModuleCredentials) => [c.bucket, c.accountId, c.accessKey, c.secretKey] as const;
/** The optional ones, in order, after the required ones (and after `resume` for train). */
export const optional = (c: ModuleCredentials) => [c.endpoint, c.sessionToken, c.apiToken, c.d1DatabaseId, c.d1ApiUrl] as const;
