// Types for bin/freshness.mjs (plain JavaScript: it runs before anything is compiled).
export declare const STAMP_FILE: string
export interface SourceFingerprint {
  files: number
  hash: string
}
export declare function sourceFingerprint(dir: string): SourceFingerprint
export declare function readStamp(distDir: string): { builtAt: string; esbuild: string; vendored: string[]; sources: SourceFingerprint } | null
export declare function distState(root: string): 'current' | 'stale' | 'missing'
