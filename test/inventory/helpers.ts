export { openSqliteInventory } from '../../src/inventory/index.js'
import { isRackbootError, type ErrorCode } from '../../src/errors.js'

export function isRackbootErrorCode(err: unknown, code: ErrorCode): boolean {
  if (!isRackbootError(err, code)) throw err
  return true
}
