import { Readable } from 'node:stream';
import { S3Client } from '@aws-sdk/client-s3';
import type { R2Settings } from './config.js';
import { type Listing, type ObjectStore, type SequentialBody } from './store.js';
export interface S3Tuning {
    /** Bytes per multipart part; every part but the last has exactly this size, as R2 requires. */
    partSize: number;
    /** Parts of one object in flight at once: memory per object is partsInFlight × partSize. */
    partsInFlight: number;
    /** Open connections kept for reuse. */
    maxSockets: number;
    /** Attempts per request inside the SDK (429, 5xx and network errors). */
    maxAttempts: number;
    /** A request whose connection stays silent this long is abandoned (and retried). */
    socketTimeoutMs: number;
}
/**
 * Chosen from bench/ measurements (BENCHMARKS.md): 16 MiB parts ship as fast as 8 MiB ones with
 * half the requests (R2 bills each part), and 64 sockets serve 32 files plus the parts of two big ones.
 */
export declare const DEFAULT_S3_TUNING: S3Tuning;
/** Cloudflare R2, or any S3-compatible server, through the AWS SDK. */
export declare class S3Store implements ObjectStore {
    readonly description: string;
    readonly client: S3Client;
    private readonly bucket;
    private readonly tuning;
    /** Part buffers of finished uploads, reused by the next ones instead of allocating (and collecting) new ones. */
    private readonly spareParts;
    /** Multipart uploads whose abort failed (R2 unreachable then): aborted again after the next success. */
    private readonly pendingAborts;
    constructor(settings: R2Settings, tuning?: Partial<S3Tuning>);
    /**
     * One PutObject up to the part size; above it a multipart upload in the manner of lib-storage's
     * Upload (a fixed pool of `partsInFlight` workers pulling parts, abort on failure), except that
     * each worker reads its parts straight into one buffer it reuses: no copying of read chunks into
     * parts, and no garbage to collect, which measured as a fifth of the CPU time of a ship.
     */
    put(key: string, body: SequentialBody | Buffer, size: number, opts?: {
        signal?: AbortSignal;
    }): Promise<void>;
    private putMultipart;
    private retryAborts;
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
    close(): void;
    /** SDK errors become R2d1Errors that name the operation and say what to check. */
    private wrap;
}
