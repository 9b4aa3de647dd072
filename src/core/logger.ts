export interface Logger {
  debug(message: string): void;
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}

export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };

/** Plain timestamped lines on stderr, so stdout stays free for --json results. */
export function consoleLogger(verbose = false): Logger {
  const line = (level: string, message: string) => process.stderr.write(`${new Date().toISOString()} r2d1 ${level} ${message}\n`);
  return {
    debug: (m) => verbose && line('debug', m),
    info: (m) => line('info', m),
    warn: (m) => line('warn', m),
    error: (m) => line('error', m),
  };
}
