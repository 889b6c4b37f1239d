#define _GNU_SOURCE
#include <sys/mman.h>
#include "clinux.h"

int h2k_memfd_create(const char *name) {
    return memfd_create(name, MFD_CLOEXEC);
}
