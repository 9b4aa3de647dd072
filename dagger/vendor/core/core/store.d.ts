import type { Readable } from 'node:stream';
export interface ObjectInfo {
    key: string;
    size: number;
    etag?: string;
    lastModified?: Date;
}
export interface Listing {
    objects: ObjectInfo[];
    /** With a delimiter: the "sub-folders" directly under the prefix, each ending in "/". */
    prefixes: string[];
}
/**
 * A local file as an upload body, read front to back on demand: each `read` fills `buffer` with
 * the file's next bytes and returns it, so an uploader can read parts into buffers it reuses.
 * Reading is what hashes and counts the bytes (in order); a file that ends early fails the read.
 */
export interface SequentialBody {
    read(buffer: Buffer): Promise<Buffer>;
}
/** A Buffer read part by part (copied into the reader's buffers). */
export declare const bufferBody: (data: Buffer) => SequentialBody;
/**
 * What r2d1 needs from object storage. Implementations: S3/R2 (`S3Store`) and a local
 * directory (`FileStore`). Errors: `R2d1Error('NOT_FOUND')` for a missing key; anything
 * else carries `retryable` as `isRetryable` judges it.
 */
export interface ObjectStore {
    /** Where the data goes, for messages: `r2://bucket (endpoint)` or `file:///dir`. */
    readonly description: string;
    /** Stores exactly `size` bytes read from `body`; never leaves a partial object visible. */
    put(key: string, body: SequentialBody | Buffer, size: number, opts?: {
        signal?: AbortSignal;
    }): Promise<void>;
    /** The whole object, or bytes `start`…`end` inclusive. */
    get(key: string, range?: {
        start: number;
        end: number;
    }, opts?: {
        signal?: AbortSignal;
    }): Promise<Readable>;
    list(prefix: string, opts?: {
        delimiter?: string;
    }): Promise<Listing>;
    delete(keys: readonly string[]): Promise<void>;
    /** Releases sockets and timers. */
    close(): void;
}
export declare function readAll(stream: Readable): Promise<Buffer>;
