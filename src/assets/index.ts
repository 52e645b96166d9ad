export { createAssetStore, talosAssetDir, IPXE_FILES, type AssetStore, type ImportOptions, type ManifestEntry } from './store.js'
export { checkFile, expectationFor, identify, type AssetExpectation, type Format } from './formats.js'
export { download, parseChecksums, type DownloadResult } from './download.js'
export { createProgress, type Progress } from './progress.js'
