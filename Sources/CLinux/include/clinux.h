#ifndef HYPER2KVM_CLINUX_H
#define HYPER2KVM_CLINUX_H

/* Linux calls that Swift's Glibc module does not export (they need _GNU_SOURCE). */

/* memfd_create(2) with MFD_CLOEXEC: an anonymous file that lives while a descriptor does. */
int h2k_memfd_create(const char *name);

/* fallocate(2) PUNCH_HOLE | KEEP_SIZE: the range reads as zeros and holds no blocks. */
int h2k_punch_hole(int descriptor, long long offset, long long length);

/* renameat2(2) flags from <linux/fs.h>. */
#define H2K_RENAME_NOREPLACE 1u
#define H2K_RENAME_EXCHANGE 2u

/* renameat2(2) relative to the working directory; -1 with errno set on failure (ENOSYS where
   the C library has no renameat2). */
int h2k_rename2(const char *source, const char *destination, unsigned int flags);

#endif
