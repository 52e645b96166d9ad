import assert from 'node:assert/strict'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { InventoryFileError, loadInventoryFiles } from '../../src/inventory/index.js'
export { openSqliteInventory } from '../../src/inventory/index.js'
import { isRackbootError, type ErrorCode } from '../../src/errors.js'

export function isRackbootErrorCode(err: unknown, code: ErrorCode): boolean {
  if (!isRackbootError(err, code)) throw err
  return true
}

/** A self-signed CA certificate (EC P-256, valid until 2126) for per-BMC CA settings; made once with openssl req. */
export const TEST_CA_PEM = `-----BEGIN CERTIFICATE-----
MIIBlTCCATugAwIBAgIUcsxWEVVkEVD4P5RxzyoWLpT5IhcwCgYIKoZIzj0EAwIw
HzEdMBsGA1UEAwwUcmFja2Jvb3QgdGVzdCBCTUMgQ0EwIBcNMjYxMjA3MDU1MzA4
WhgPMjEyNjExMTMwNTUzMDhaMB8xHTAbBgNVBAMMFHJhY2tib290IHRlc3QgQk1D
IENBMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEyhW2Gd2uwFFL2jZjCO2RSXgp
2x1NQenqLvTW3onWnL+V1y4gdzxXPQu+HBNg3fMulvVzJ6u5YmYfmt7FOxdS1qNT
MFEwHQYDVR0OBBYEFJ4Kc/NzZeLksHaeCT3TWqkpkH59MB8GA1UdIwQYMBaAFJ4K
c/NzZeLksHaeCT3TWqkpkH59MA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwID
SAAwRQIgHaSB30A6g0stnKjuzYRA78swUAnFygig+0czs59/KTwCIQDzblDDVhCJ
wPBfsm6dBGp6UeyUUBmn0+e4DvszZLCK6g==
-----END CERTIFICATE-----
`

/** A fresh temporary directory for inventory files. */
export function tempDir(prefix = 'rb-files-'): string {
  return mkdtempSync(join(tmpdir(), prefix))
}

/** The InventoryFileError loading `dir` gives; fails the test when it loads. */
export function loadError(dir: string): InventoryFileError {
  try {
    loadInventoryFiles(dir)
  } catch (err) {
    if (err instanceof InventoryFileError) return err
    throw err
  }
  assert.fail('expected an InventoryFileError')
}
