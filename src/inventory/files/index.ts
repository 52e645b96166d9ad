export { loadInventoryFiles, InventoryFileError, type DesiredInventory, type InventoryProblem } from './load.js'
export { importInventory, MANAGED_BY, type ImportReport, type ImportOptions, type Change } from './reconcile.js'
export { exportInventory, type ExportResult } from './export.js'
export type { FileMachine, FileClass, FileProfile, InventoryFile } from './schema.js'
