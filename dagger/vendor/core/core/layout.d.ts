export declare const MANIFEST_FORMAT = "r2d1-manifest/1";
export interface ManifestFile {
    path: string;
    size: number;
    sha256: string;
}
export interface Manifest {
    format: typeof MANIFEST_FORMAT;
    jobId: string;
    name: string;
    epoch: number;
    /** The sidecar's timestamp, seconds since the epoch. */
    timestamp: number;
    metadata: Record<string, unknown>;
    version: string;
    /** Key prefix of the version's files, ending in "/". */
    prefix: string;
    /** SHA-256 of the sidecar bytes: how a restarted courier recognises what it already shipped. */
    sidecarSha256: string;
    /** The sidecar as the training code wrote it, put back beside the folder on pull. */
    sidecar: string;
    files: ManifestFile[];
    bytes: number;
    committedAt: string;
}
export interface VersionRef {
    jobId: string;
    name: string;
    version: string;
    epoch: number;
    timestampMs: number;
}
export declare const jobPrefix: (jobId: string) => string;
export declare const slotPrefix: (jobId: string, name: string) => string;
export declare const versionPrefix: (ref: VersionRef) => string;
export declare const manifestKey: (ref: VersionRef) => string;
export declare function newVersion(jobId: string, name: string, epoch: number, timestamp: number): VersionRef;
/** The version a key names, when it is a manifest key directly under a slot prefix. */
export declare function parseManifestKey(jobId: string, name: string, key: string): VersionRef | undefined;
export declare function parseVersion(jobId: string, name: string, version: string): VersionRef | undefined;
/** Across a job, `latest` is the highest epoch; the later sidecar timestamp breaks ties. */
export declare function compareLatestFirst(a: VersionRef, b: VersionRef): number;
/**
 * Within one slot, the newest version is the one written last (sidecar timestamp), so a run restarted
 * from scratch at a lower epoch still replaces the slot's old content.
 */
export declare function compareSlotNewestFirst(a: VersionRef, b: VersionRef): number;
/** Parses and checks a manifest from the bucket: nothing in it is trusted. */
export declare function parseManifest(text: string, ref: VersionRef): Manifest;
export type R2Uri = {
    kind: 'latest';
    jobId: string;
} | {
    kind: 'checkpoint';
    jobId: string;
    name: string;
} | {
    kind: 'prefix';
    prefix: string;
};
/** `r2://jobs/<id>/latest`, `r2://jobs/<id>/<name>`, or any `r2://<prefix>`. */
export declare function parseR2Uri(uri: string): R2Uri;
