export type Env = Record<string, string | undefined>;
export interface R2Settings {
    kind: 'r2';
    bucket: string;
    endpoint: string;
    accessKeyId: string;
    secretAccessKey: string;
    sessionToken?: string;
}
export interface FileStoreSettings {
    kind: 'file';
    root: string;
}
export interface D1Settings {
    apiUrl: string;
    accountId: string;
    databaseId: string;
    apiToken: string;
}
export interface Config {
    store: R2Settings | FileStoreSettings;
    /** Absent: R2-only mode, no metadata rows. */
    d1?: D1Settings;
    /** For each setting, the variable it was read from (for `r2d1 secrets`). */
    sources: Record<string, string>;
}
export declare const DEFAULT_D1_API_URL = "https://api.cloudflare.com/client/v4";
/**
 * Reads `.env` (when present) under the real environment: a variable already set wins,
 * as with python-dotenv's default.
 */
export declare function withDotEnv(env: Env, dotEnvPath?: string): Env;
export declare function loadConfig(env: Env): Config;
/** `abcd…wxyz` for long secrets, `****` for short ones: enough to tell two keys apart. */
export declare function maskSecret(value: string): string;
export interface ConfigLine {
    setting: string;
    variable: string;
    value: string;
}
/** What `r2d1 secrets` prints: every setting, where it came from, secrets masked. */
export declare function describeConfig(config: Config): ConfigLine[];
