#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdio.h>
#include <sys/mman.h>
#include "clinux.h"

int h2k_memfd_create(const char *name) {
    return memfd_create(name, MFD_CLOEXEC);
}

int h2k_rename2(const char *source, const char *destination, unsigned int flags) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 28))
    return renameat2(AT_FDCWD, source, AT_FDCWD, destination, flags);
#else
    (void)source; (void)destination; (void)flags;
    errno = ENOSYS;
    return -1;
#endif
}

int h2k_punch_hole(int descriptor, long long offset, long long length) {
    return fallocate(descriptor, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)offset, (off_t)length);
}
