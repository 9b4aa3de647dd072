export interface RetryPolicy {
    /** Total attempts, the first included. */
    attempts: number;
    baseDelayMs: number;
    maxDelayMs: number;
}
export declare const DEFAULT_RETRY: RetryPolicy;
export type Sleep = (ms: number, signal?: AbortSignal) => Promise<void>;
export declare const sleep: Sleep;
/** "Full jitter" backoff: a random delay up to base × 2^attempt, capped. */
export declare function backoffDelay(attempt: number, policy: Pick<RetryPolicy, 'baseDelayMs' | 'maxDelayMs'>): number;
/** Runs `fn` until it succeeds, fails with a non-retryable error, or runs out of attempts. */
export declare function withRetry<T>(fn: (attempt: number) => Promise<T>, opts?: Partial<RetryPolicy> & {
    retryable?: (err: unknown) => boolean;
    onRetry?: (err: unknown, attempt: number, delayMs: number) => void;
    sleep?: Sleep;
    signal?: AbortSignal;
}): Promise<T>;
