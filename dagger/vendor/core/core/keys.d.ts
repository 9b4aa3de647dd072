/**
 * A relative path from a remote listing or manifest, checked before it touches the disk:
 * no `..`, no absolute paths, no backslashes or control characters, no empty segments.
 * Returns the path NFC-normalised, the form that collisions are judged in.
 */
export declare function safeRelativePath(path: string, what: string): string;
/** The local path for `relative` under `root`, refusing anything that would resolve outside it. */
export declare function localPathUnder(root: string, relative: string, what: string): string;
/** Job ids and slot names become one key segment each. */
export declare function checkSegment(value: string, what: string): string;
/** Two names that normalise to the same path would overwrite each other on disk. */
export declare function findCollision(paths: readonly string[]): [string, string] | undefined;
