export { buildApp, type AppDeps, type HttpLimits } from './app.js'
export { DEFAULT_CONNECTION_LIMITS, type ConnectionLimits } from './connection-limits.js'
