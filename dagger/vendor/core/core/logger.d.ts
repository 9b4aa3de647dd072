export interface Logger {
    debug(message: string): void;
    info(message: string): void;
    warn(message: string): void;
    error(message: string): void;
}
export declare const silentLogger: Logger;
/** Plain timestamped lines on stderr, so stdout stays free for --json results. */
export declare function consoleLogger(verbose?: boolean): Logger;
