// Constants of the machine and the file systems, defined once. The entry
// word's constants come from native/entry.h through the addon.
import { native } from './native.js';

/** Bytes of a page (the PTE entry size): the kernel's, from sysconf. */
export const PAGE_SIZE: number = native.constants.PAGE_SIZE;
/** Bytes of a 2 MiB block (the PMD entry size). */
export const PMD_SIZE = 2 * 1024 * 1024;
if (PAGE_SIZE !== 4096) throw new Error(`udax supports 4 KiB pages only; this kernel's page size is ${PAGE_SIZE}`);

/** statfs f_type of tmpfs (linux/magic.h TMPFS_MAGIC). */
export const TMPFS_MAGIC = 0x01021994;

/** Names of the statfs f_type values udax reports (linux/magic.h). */
export const FILE_SYSTEM_NAMES: Readonly<Record<number, string>> = {
  [TMPFS_MAGIC]: 'tmpfs',
  0xef53: 'ext4',
  0x58465342: 'xfs',
  0x9123683e: 'btrfs',
};

export function fileSystemName(fsType: number): string {
  return FILE_SYSTEM_NAMES[fsType] ?? `0x${fsType.toString(16)}`;
}
