/** A counting semaphore: at most `size` tasks run at once, the rest wait in order. */
export class Pool {
  private active = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(private readonly size: number) {}

  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.active >= this.size) await new Promise<void>((resolve) => this.waiting.push(resolve));
    this.active++;
    try {
      return await task();
    } finally {
      this.active--;
      this.waiting.shift()?.();
    }
  }
}

/**
 * Runs `task` for every item with the pool's limit; on the first failure aborts the others
 * (through the signal they receive) and rethrows it once all have stopped.
 */
export async function forEachAbortable<T>(
  items: readonly T[],
  pool: Pool,
  signal: AbortSignal | undefined,
  task: (item: T, signal: AbortSignal) => Promise<void>,
): Promise<void> {
  const stop = new AbortController();
  const linked = signal ? AbortSignal.any([signal, stop.signal]) : stop.signal;
  let firstError: unknown;
  await Promise.all(
    items.map((item) =>
      pool
        .run(async () => {
          linked.throwIfAborted();
          await task(item, linked);
        })
        .catch((err) => {
          if (firstError === undefined) {
            firstError = err;
            stop.abort(err);
          }
        }),
    ),
  );
  if (firstError !== undefined) throw firstError;
}
