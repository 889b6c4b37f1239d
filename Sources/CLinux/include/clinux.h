#ifndef HYPER2KVM_CLINUX_H
#define HYPER2KVM_CLINUX_H

/* Linux calls that Swift's Glibc module does not export (they need _GNU_SOURCE). */

/* memfd_create(2) with MFD_CLOEXEC: an anonymous file that lives while a descriptor does. */
int h2k_memfd_create(const char *name);

#endif
