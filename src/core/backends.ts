import type { Config } from './config.js';
import { D1Client } from './d1.js';
import { FileStore } from './fileStore.js';
import type { Logger } from './logger.js';
import { S3Store, type S3Tuning } from './s3Store.js';
import type { ObjectStore } from './store.js';

/** The two remote sides r2d1 talks to. No D1 client: R2-only mode. */
export interface Backends {
  store: ObjectStore;
  d1?: D1Client;
}

let warnedR2Only = false;

/** Builds the store and D1 client a configuration names; warns once per process about R2-only mode. */
export function openBackends(config: Config, logger: Logger, tuning: Partial<S3Tuning> = {}): Backends {
  const store = config.store.kind === 'file' ? new FileStore(config.store.root) : new S3Store(config.store, tuning);
  if (!config.d1 && !warnedR2Only) {
    warnedR2Only = true;
    logger.warn('D1 is not configured (R2D1_API_TOKEN, R2D1_D1_DATABASE_ID): R2-only mode, no metadata rows or heartbeat');
  }
  return { store, d1: config.d1 ? new D1Client(config.d1) : undefined };
}
