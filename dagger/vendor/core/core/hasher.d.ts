import type { HashAlgorithm } from './transfer.js';
/** A hash of one file that grows front to back, computed by the worker as the front advances. */
export declare class FollowingHash {
    private readonly path;
    private readonly id;
    private readonly w;
    private ended;
    constructor(path: string, algorithm: HashAlgorithm);
    /** The first `end` bytes of the file are written and will not change. */
    advance(end: number): void;
    /** The whole file (`size` bytes) is written: its hex digest. */
    digest(size: number): Promise<string>;
    /** The download failed: forget the job and close its file. */
    cancel(): void;
    private end;
}
