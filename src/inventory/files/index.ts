export {
  loadInventoryFiles, loadInventorySources, inventoryPathProblem, InventoryFileError, type DesiredInventory, type DesiredMachine, type InventoryProblem,
  type InventorySource,
} from './load.js'
export { importInventory, MANAGED_BY, type ImportReport, type ImportOptions, type Change } from './reconcile.js'
export { allMachines, exportInventory, renderInventoryFiles, type ExportResult, type RenderedInventory } from './export.js'
export type { FileMachine, FileClass, FileProfile, FileBmc, InventoryFile } from './schema.js'
export { PhaseDeadlinesSchema } from './schema.js'
export {
  BMC_AUTHS, BMC_BOOT_VERIFY, BMC_PRIVILEGES, BOOT_METHODS, IPMI_CIPHER_SUITES, SECRET_REF_PATTERN, adoptedBmcAddress, bmcHost,
  bootMethodProblem, cipherSuitesProblem, ipmiAddressProblem, misplacedBmcField,
  normalizeBmcFingerprint, normalizeSystemId, parseCaPem, parseKg, reportedBmcAddressProblem, resolveSecretRef, splitRedfishAddress,
  systemKey, type BmcProblem, applyBmcChanges, BMC_DRAFT_DEFAULTS, bmcChangedFields, bmcDraftOf, bmcInputOf, refuseBmcProblems,
  type BmcChanges, type BmcDraft,
} from './bmc-settings.js'
