// The TFTP server's public door: RFC 1350 read requests with RFC 2347/2348/2349/7440 options, files from the
// assets directory and generated content by path.
//
//   const source = createRoutingSource({ fallback: createFileSource({ root: settings.assetsDir }) })
//   source.register('boot.ipxe', (path, client) => bufferContent(script))      // generated content, by path
//   const tftp = createTftpServer({ settings: settings.tftp, source, log, metrics, observer })
//   await tftp.start()                                                         // { address, port }
//
// The observer hears of every request that ends (done, refused, aborted by the client, timed out), with the
// client's address, for the boot timeline.
export { createTftpServer } from './server.js'
export type { TftpServer, TftpServerDeps, TftpServerSettings, TftpObserver, TftpTransferInfo, TftpStats } from './server.js'
export { createFileSource, createRoutingSource, bufferContent, normalizeRequestPath, isDenied } from './source.js'
export type {
  TftpSource,
  TftpContent,
  TftpDenied,
  TftpOpenResult,
  TftpClient,
  TftpHandler,
  TftpRoute,
  RoutingSource,
  FileSourceDeps,
} from './source.js'
export { blockSizeCap } from './options.js'
