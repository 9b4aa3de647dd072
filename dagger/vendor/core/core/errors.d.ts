/**
 * Every failure r2d1 reports carries a hint: what to change to make it work.
 * Entry points print `message` and `hint`; the stack only with --verbose.
 */
export type ErrorCode = 'CONFIG' | 'BAD_INPUT' | 'UNSAFE_KEY' | 'SIDECAR' | 'STORE' | 'NOT_FOUND' | 'D1' | 'VERIFY' | 'CHANGED' | 'SUPERSEDED' | 'TIMEOUT';
export declare class R2d1Error extends Error {
    readonly code: ErrorCode;
    readonly hint: string;
    /** Worth trying again (network, 429, 5xx, a file that changed under us). */
    readonly retryable: boolean;
    constructor(code: ErrorCode, message: string, opts?: {
        hint?: string;
        retryable?: boolean;
        cause?: unknown;
    });
}
/** One line for a human: the message, then the fix. */
export declare function describeError(err: unknown): string;
/** Retry only what can heal by itself: 429, 5xx and network errors. */
export declare function isRetryable(err: unknown): boolean;
