import type { Readable } from 'node:stream';
import type { Listing, ObjectStore, SequentialBody } from './store.js';
/**
 * A directory standing in for a bucket (R2D1_STORE=file:///dir): for the demo, for tests, and for
 * shared filesystems. Objects are written to a temporary name and renamed, so none is ever partial.
 */
export declare class FileStore implements ObjectStore {
    readonly description: string;
    private readonly root;
    constructor(root: string);
    private path;
    put(key: string, body: SequentialBody | Buffer, size: number, opts?: {
        signal?: AbortSignal;
    }): Promise<void>;
    get(key: string, range?: {
        start: number;
        end: number;
    }): Promise<Readable>;
    list(prefix: string, opts?: {
        delimiter?: string;
    }): Promise<Listing>;
    private walk;
    delete(keys: readonly string[]): Promise<void>;
    close(): void;
}
