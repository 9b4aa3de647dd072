/**
 * The few calls the module makes into the Dagger engine that are not methods of its arguments,
 * gathered behind one interface so tests can replace them: the functions' real work (the r2d1 core
 * against a bucket and D1) then runs unchanged outside an engine, and only what crosses into Dagger
 * is faked (see __tests__/helpers/daggerFakes.ts). Methods of the arguments themselves
 * (`Secret.plaintext`, `Directory.export`, `Container.with*`) are faked by passing fake objects.
 *
 * Not part of the module's Dagger API: the introspector only exposes decorated classes.
 */
import { dag, type Directory, type File } from '@dagger.io/dagger';
import { consoleLogger, type Logger } from '../vendor/core/index.js';

export interface DaggerBoundary {
  /**
   * An absolute directory the function may write files under and return them from: in the engine,
   * the function's scratch working directory (its process's cwd), which `workdir` reads back.
   */
  scratchDir(): string;
  /** The Directory at `path` (relative to `scratchDir()`), with what the function wrote there. */
  workdir(path: string): Directory;
  /** A file of this module's own source tree (the dagger/ directory), e.g. the vendored CLI. */
  moduleFile(path: string): File;
  /** A file from a container image, e.g. the Node binary of node:24. */
  imageFile(image: string, path: string): File;
  /** Where the core logs (stderr in the engine: it shows in `dagger call`'s output). */
  logger: Logger;
}

/** The engine: `dag.currentModule()` for the module's workdir and source, `dag.container()` for images. */
export const engineBoundary: DaggerBoundary = {
  scratchDir: () => process.cwd(),
  workdir: (path) => dag.currentModule().workdir(path),
  moduleFile: (path) => dag.currentModule().source().file(path),
  imageFile: (image, path) => dag.container().from(image).file(path),
  logger: consoleLogger(),
};

let current: DaggerBoundary = engineBoundary;

/** The boundary the functions use now. */
export function boundary(): DaggerBoundary {
  return current;
}

/** Tests swap in fakes; called with no argument, it puts the engine's calls back. */
export function setBoundary(next: DaggerBoundary = engineBoundary): void {
  current = next;
}
