// The TFTP server's public door: RFC 1350 read requests with RFC 2347/2348/2349/7440 options, files from the
// assets directory and generated content by path.
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
