/** The library API: the seed's names (`Courier`, `Fetcher`, `FetchInfo`) and the types around them. */
export { Courier, DEFAULT_COURIER_TUNING, formatBytes, type CourierTuning, type FailedCheckpoint, type ShipReport, type ShippedCheckpoint, type WatchOptions } from './core/courier.js';
export { Fetcher, DEFAULT_FETCHER_TUNING, type FetchInfo, type FetcherTuning, type PullOptions } from './core/fetcher.js';
export { Catalog, type CommittedCheckpoint } from './core/catalog.js';
export { loadConfig, withDotEnv, describeConfig, type Config, type Env } from './core/config.js';
export { openBackends, type Backends } from './core/backends.js';
export { D1Client, CHECKPOINTS_SCHEMA, type CheckpointRow } from './core/d1.js';
export { S3Store, DEFAULT_S3_TUNING, type S3Tuning } from './core/s3Store.js';
export { FileStore } from './core/fileStore.js';
export { bufferBody, type ObjectStore, type ObjectInfo, type Listing, type SequentialBody } from './core/store.js';
export { R2d1Error, describeError, type ErrorCode } from './core/errors.js';
export { parseR2Uri, type Manifest, type R2Uri } from './core/layout.js';
export { consoleLogger, silentLogger, type Logger } from './core/logger.js';
