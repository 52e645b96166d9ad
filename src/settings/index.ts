export { loadSettings, DEFAULT_SETTINGS_FILE, type LoadOptions } from './load.js'
export { SettingsSchema, type Settings, type SettingsInput, type DhcpSubnetSettings } from './schema.js'
