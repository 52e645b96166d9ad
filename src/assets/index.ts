export { createAssetStore, talosAssetDir, IPXE_FILES, type AssetStore, type ManifestEntry } from './store.js'
export { download, parseChecksums, type DownloadResult } from './download.js'
export { createProgress, type Progress } from './progress.js'
