/** The seed's sidecar schema: `{name, epoch, timestamp, files, metadata}`; written LAST. */
export interface Sidecar {
    name: string;
    epoch: number;
    /** Seconds since the Unix epoch. */
    timestamp: number;
    files?: string[];
    metadata: Record<string, unknown>;
}
export declare const sha256: (data: string | Buffer) => string;
/**
 * Checks a sidecar read from `<name>.json`. `fallbackTimestamp` (the file's mtime) stands in
 * for a missing timestamp. Throws a SIDECAR error naming the file and the expected shape.
 */
export declare function parseSidecar(text: string, fileName: string, fallbackTimestamp: number): Sidecar;
