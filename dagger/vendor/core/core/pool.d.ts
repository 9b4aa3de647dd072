/** A counting semaphore: at most `size` tasks run at once, the rest wait in order. */
export declare class Pool {
    private readonly size;
    private active;
    private readonly waiting;
    constructor(size: number);
    run<T>(task: () => Promise<T>): Promise<T>;
}
/**
 * Runs `task` for every item with the pool's limit; on the first failure aborts the others
 * (through the signal they receive) and rethrows it once all have stopped.
 */
export declare function forEachAbortable<T>(items: readonly T[], pool: Pool, signal: AbortSignal | undefined, task: (item: T, signal: AbortSignal) => Promise<void>): Promise<void>;
