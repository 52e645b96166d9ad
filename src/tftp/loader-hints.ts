// A TFTP "file not found" for a loader rackboot offers is a setup mistake, not a client's: the boot timeline then
// says what fetches the file (or switches that firmware off) instead of a bare "File not found".
import type { TftpObserver } from './server.js'
import { normalizeRequestPath } from './source.js'

/** `hint(path)`: the fix for a missing file at this normalised path, or null when it is no loader. */
export function withNotFoundHints(observer: TftpObserver, hint: (path: string) => string | null): TftpObserver {
  return {
    transferFinished(info) {
      if (!info.ok && !info.aborted && info.error === 'File not found') {
        const path = normalizeRequestPath(info.file)
        const fix = path.ok ? hint(path.path) : null
        if (fix) return observer.transferFinished({ ...info, error: `${info.error}: ${fix}` })
      }
      observer.transferFinished(info)
    },
  }
}
