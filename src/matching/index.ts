// Selectors and classes: which machines a class or an allocation request means. Parse once (errors carry the
// position), evaluate against Machines in JS, and hand SQL the bounds it can check on the summary columns.
export { compileSelector, andSelectors, type Selector } from './selector.js'
import { compileSelector } from './selector.js'
export { parseSelector, compileNode, type Node, type CompiledPath, type ColumnHint, type Literal } from './parser.js'
export { boundsOf, mergeBounds } from './hints.js'
export { compileRegex, RegexSyntaxError, MAX_PATTERN_LENGTH, MAX_PROGRAM_SIZE, type LinearRegex } from './regex.js'
export { tokenize, SIZE_UNITS, type Token, type CompareOp } from './lexer.js'
export { MACHINE_FIELDS } from './fields.js'
export { chooseClass, evaluateClass, type ClassChoice, type ClassMatch, type SelectorResult } from './classes.js'

/** One selector's problem as one line (for inventory files, which report it at the selector's file:line), or null. */
export function checkSelector(selector: string): string | null {
  try {
    compileSelector([selector])
    return null
  } catch (err) {
    return (err as Error).message
  }
}
