// Where TFTP finds a loader: GRUB netboot images (grub*.efi) under <assetsDir>/grub, every other name under
// <assetsDir>/ipxe (iPXE's loaders and whatever an operator puts there). Generated content (GRUB's grub.cfg-01-<mac>,
// registered by the caller) comes first, as on any routing source.
import { join } from 'node:path'
import { isGrubImage } from '../assets/loaders.js'
import { isRackbootError } from '../errors.js'
import { createFileSource, createRoutingSource, type RoutingSource, type TftpSource } from './source.js'

export interface LoaderSource {
  /** The source TFTP serves: register generated content on it. */
  source: RoutingSource
  /** The files under <assetsDir>/ipxe (the operator's own grub.cfg, for one, is looked up there). */
  ipxeFiles: TftpSource
}

export function createLoaderSource(deps: { assetsDir: string }): LoaderSource {
  const ipxeFiles = createFileSource({ root: join(deps.assetsDir, 'ipxe') })
  const grubFiles = createFileSource({ root: join(deps.assetsDir, 'grub') })
  const source = createRoutingSource({ fallback: ipxeFiles })
  // `grubnetaa64.efi` or `grub/grubnetaa64.efi`: the image itself, from grub/.
  source.register((path) => isGrubImage(path), async (path, client) => {
    try {
      return await grubFiles.open(path.slice(path.lastIndexOf('/') + 1), client)
    } catch (err) {
      // No grub/ directory yet (nothing fetched): the image is simply not there.
      if (isRackbootError(err) && err.code === 'RB_ERR_NOT_FOUND') return null
      throw err
    }
  })
  return { source, ipxeFiles }
}
