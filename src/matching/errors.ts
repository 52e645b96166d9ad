import { RackbootError } from '../errors.js'

/** A selector that does not parse or names an unknown field: 400 with where it went wrong. */
export function selectorError(selector: string, position: number, message: string): RackbootError {
  const pointer = `${selector}\n${' '.repeat(Math.max(0, position))}^`
  return new RackbootError('RB_ERR_VALIDATION', `selector '${selector}': ${message} at position ${position}`, {
    details: { selector, position, reason: message, pointer },
  })
}
