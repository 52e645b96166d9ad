// A text/event-stream parser (the WHATWG "event stream interpretation" rules), fed text chunks as they arrive.
// The page reads the stream with fetch() because EventSource cannot send an Authorization header.

/**
 * Returns feed(text): call it with each decoded chunk. `onEvent({ id, event, data })` runs per dispatched event
 * (`id` is the last event id in effect, or null), `onComment(text)` per comment line, `onRetry(ms)` per retry field.
 */
export function createSseParser({ onEvent, onComment = () => {}, onRetry = () => {} }) {
  let buffer = ''
  let data = []
  let event = ''
  let lastId = null
  let sawCr = false

  function line(text) {
    if (text === '') {
      if (data.length > 0) onEvent({ id: lastId, event: event || 'message', data: data.join('\n') })
      data = []
      event = ''
      return
    }
    if (text.startsWith(':')) {
      onComment(text.slice(1).replace(/^ /, ''))
      return
    }
    const colon = text.indexOf(':')
    const field = colon === -1 ? text : text.slice(0, colon)
    const value = colon === -1 ? '' : text.slice(colon + 1).replace(/^ /, '')
    if (field === 'data') data.push(value)
    else if (field === 'event') event = value
    else if (field === 'id' && !value.includes('\0')) lastId = value
    else if (field === 'retry' && /^\d+$/.test(value)) onRetry(Number(value))
  }

  return function feed(chunk) {
    let text = chunk
    // A CRLF split across chunks: the LF belongs to the CR already handled.
    if (sawCr && text.startsWith('\n')) text = text.slice(1)
    sawCr = false
    buffer += text
    let start = 0
    for (let i = 0; i < buffer.length; i++) {
      const c = buffer[i]
      if (c !== '\n' && c !== '\r') continue
      line(buffer.slice(start, i))
      if (c === '\r') {
        if (i + 1 === buffer.length) sawCr = true
        else if (buffer[i + 1] === '\n') i++
      }
      start = i + 1
    }
    buffer = buffer.slice(start)
  }
}
