// The loader hooks of import-trace.mjs: each module's URL, posted to the main thread as it is loaded.
let port

export function initialize(data) {
  port = data.port
}

export async function load(url, context, next) {
  port.postMessage(url)
  return next(url, context)
}
