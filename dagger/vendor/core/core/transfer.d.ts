import type { ObjectStore } from './store.js';
export type Progress = (bytes: number) => void;
/** Bytes a transfer is about to move: with Progress, what an ETA needs. */
export type Planned = (bytes: number) => void;
export type HashAlgorithm = 'sha256' | 'md5';
/**
 * Uploads one local file, hashing it in the same pass. A file that is modified or replaced
 * while it is read is detected (size, mtime, inode, bytes read) and the upload reported as CHANGED.
 */
export declare function uploadFile(store: ObjectStore, key: string, path: string, opts?: {
    signal?: AbortSignal;
    onProgress?: Progress;
}): Promise<{
    size: number;
    sha256: string;
}>;
export interface DownloadOptions {
    signal?: AbortSignal;
    onProgress?: Progress;
    /** Objects larger than this are fetched as parallel ranged parts of this size. */
    partSize: number;
    partsInFlight: number;
    /** sha256 for manifests; md5 to compare with a plain S3 ETag. */
    algorithm?: HashAlgorithm;
}
/**
 * Downloads `key` (exactly `size` bytes) to `path` and returns its hash, computed while the bytes
 * arrive. Big objects come as ranged parts in parallel. Bytes are written at their offsets as they
 * arrive (no part is held in memory) and hashed in order on a worker thread that follows the written
 * front; an answer cut short is resumed from the byte it reached.
 */
export declare function downloadFile(store: ObjectStore, key: string, size: number, path: string, opts: DownloadOptions): Promise<string>;
/** Only a body cut short is retried here: the SDK already retried the request itself. */
export declare const isCutShort: (err: unknown) => boolean;
/** Hash of a local file (to check what is already on disk). */
export declare function hashFile(path: string, algorithm?: HashAlgorithm): Promise<string>;
