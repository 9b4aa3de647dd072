import type { Config } from './config.js';
import { D1Client } from './d1.js';
import type { Logger } from './logger.js';
import { type S3Tuning } from './s3Store.js';
import type { ObjectStore } from './store.js';
/** The two remote sides r2d1 talks to. No D1 client: R2-only mode. */
export interface Backends {
    store: ObjectStore;
    d1?: D1Client;
}
/** Builds the store and D1 client a configuration names; warns once per process about R2-only mode. */
export declare function openBackends(config: Config, logger: Logger, tuning?: Partial<S3Tuning>): Backends;
