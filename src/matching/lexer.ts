import { selectorError } from './errors.js'

// Tokens of the selector language: `cpu.cores >= 32 and labels.rack in [r12, r13]`.

export type TokenKind =
  | 'word' | 'number' | 'string' | 'op'
  | '(' | ')' | '[' | ']' | ',' | '.'
  | 'and' | 'or' | 'not' | 'eof'

export type CompareOp = '==' | '!=' | '<' | '<=' | '>' | '>=' | '=~' | '!~'

export interface Token {
  kind: TokenKind
  /** Source text of the token (for strings: the unquoted value). */
  text: string
  /** 0-based offset into the selector. */
  pos: number
  /** Numbers: the value in the unit written (bytes when a size unit was given). */
  value?: number
  /** Numbers: true when a size unit (GiB, TB, ...) was written. */
  sized?: boolean
}

/** Size units: decimal (KB, MB, ...) and binary (KiB, MiB, ...), case-insensitive. */
export const SIZE_UNITS: Readonly<Record<string, number>> = {
  b: 1,
  kb: 1e3, mb: 1e6, gb: 1e9, tb: 1e12, pb: 1e15,
  kib: 2 ** 10, mib: 2 ** 20, gib: 2 ** 30, tib: 2 ** 40, pib: 2 ** 50,
}

const NUMBER_RE = /-?\d+(?:\.\d+)?(?:(kib|mib|gib|tib|pib|kb|mb|gb|tb|pb|b)(?![\w:/-]))?(?![\w:/-])/iy
const WORD_RE = /[A-Za-z0-9_][A-Za-z0-9_\-:/]*/y
const OPS = ['==', '!=', '>=', '<=', '=~', '!~', '&&', '||', '>', '<', '=', '!'] as const

/**
 * Where character `index` of a token's value stands in the source: for a string, past the opening quote, each
 * `\x` the lexer unescaped counting two source characters. Points an error inside a regex at its place.
 */
export function sourceOffset(source: string, token: Token, index: number): number {
  if (token.kind !== 'string') return token.pos + index
  let j = token.pos + 1
  for (let k = 0; k < index && j < source.length; k++) j += source[j] === '\\' ? 2 : 1
  return j
}

export function tokenize(source: string): Token[] {
  const tokens: Token[] = []
  let i = 0
  while (i < source.length) {
    const ch = source[i]!
    if (/\s/.test(ch)) {
      i++
      continue
    }
    if ('()[],.'.includes(ch)) {
      tokens.push({ kind: ch as TokenKind, text: ch, pos: i })
      i++
      continue
    }
    if (ch === '"' || ch === "'") {
      let j = i + 1
      let text = ''
      while (j < source.length && source[j] !== ch) {
        if (source[j] === '\\' && j + 1 < source.length) {
          text += source[j + 1]
          j += 2
        } else {
          text += source[j]
          j++
        }
      }
      if (j >= source.length) throw selectorError(source, i, 'unterminated string')
      tokens.push({ kind: 'string', text, pos: i })
      i = j + 1
      continue
    }
    const op = OPS.find((o) => source.startsWith(o, i))
    // '-' starts a number only when a digit follows; '!' alone is negation.
    if (op) {
      if (op === '&&') tokens.push({ kind: 'and', text: op, pos: i })
      else if (op === '||') tokens.push({ kind: 'or', text: op, pos: i })
      else if (op === '!') tokens.push({ kind: 'not', text: op, pos: i })
      else tokens.push({ kind: 'op', text: op === '=' ? '==' : op, pos: i })
      i += op.length
      continue
    }
    NUMBER_RE.lastIndex = i
    const num = NUMBER_RE.exec(source)
    if (num) {
      const unit = num[1]?.toLowerCase()
      const base = Number(unit ? num[0].slice(0, -unit.length) : num[0])
      tokens.push({ kind: 'number', text: num[0], pos: i, value: unit ? base * SIZE_UNITS[unit]! : base, sized: !!unit })
      i += num[0].length
      continue
    }
    WORD_RE.lastIndex = i
    const word = WORD_RE.exec(source)
    if (word) {
      const lower = word[0].toLowerCase()
      const kind: TokenKind = lower === 'and' ? 'and' : lower === 'or' ? 'or' : lower === 'not' ? 'not' : 'word'
      tokens.push({ kind, text: word[0], pos: i })
      i += word[0].length
      continue
    }
    throw selectorError(source, i, `unexpected character '${ch}'`)
  }
  tokens.push({ kind: 'eof', text: '', pos: source.length })
  return tokens
}
