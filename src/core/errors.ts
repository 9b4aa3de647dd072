/**
 * Every failure r2d1 reports carries a hint: what to change to make it work.
 * Entry points print `message` and `hint`; the stack only with --verbose.
 */
export type ErrorCode =
  | 'CONFIG'
  | 'BAD_INPUT'
  | 'UNSAFE_KEY'
  | 'SIDECAR'
  | 'STORE'
  | 'NOT_FOUND'
  | 'D1'
  | 'VERIFY'
  | 'CHANGED'
  | 'SUPERSEDED'
  | 'TIMEOUT';

export class R2d1Error extends Error {
  readonly code: ErrorCode;
  readonly hint: string;
  /** Worth trying again (network, 429, 5xx, a file that changed under us). */
  readonly retryable: boolean;

  constructor(code: ErrorCode, message: string, opts: { hint?: string; retryable?: boolean; cause?: unknown } = {}) {
    super(message, { cause: opts.cause });
    this.name = 'R2d1Error';
    this.code = code;
    this.hint = opts.hint ?? '';
    this.retryable = opts.retryable ?? false;
  }
}

/** One line for a human: the message, then the fix. */
export function describeError(err: unknown): string {
  if (err instanceof R2d1Error) return err.hint ? `${err.message} (${err.hint})` : err.message;
  if (err instanceof Error) return err.message;
  return String(err);
}

const RETRYABLE_NETWORK_CODES = new Set([
  'ECONNRESET', 'ECONNREFUSED', 'EPIPE', 'ETIMEDOUT', 'ENOTFOUND', 'EAI_AGAIN', 'ENETUNREACH',
  'EHOSTUNREACH', 'ECONNABORTED', 'UND_ERR_SOCKET', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
]);

/** Retry only what can heal by itself: 429, 5xx and network errors. */
export function isRetryable(err: unknown): boolean {
  if (err instanceof R2d1Error) return err.retryable;
  if (!err || typeof err !== 'object') return false;
  const e = err as { code?: string; name?: string; $metadata?: { httpStatusCode?: number }; $retryable?: unknown; cause?: unknown };
  const status = e.$metadata?.httpStatusCode;
  if (status !== undefined) return status === 429 || status >= 500;
  if (e.code && RETRYABLE_NETWORK_CODES.has(e.code)) return true;
  if (e.name === 'TimeoutError' || e.name === 'RequestTimeout' || e.$retryable) return true;
  return e.cause !== undefined && e.cause !== err ? isRetryable(e.cause) : false;
}
