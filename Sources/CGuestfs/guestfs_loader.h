#ifndef HYPER2KVM_CGUESTFS_LOADER_H
#define HYPER2KVM_CGUESTFS_LOADER_H

/* libguestfs is loaded with dlopen on the first guestfs_* call (guestfs_loader.c). If that
 * failed, guestfs_create_flags returned NULL with errno = ELIBACC and this is why
 * ("libguestfs.so.0 could not be loaded: <dlerror>; install libguestfs0"); NULL when the
 * library is loaded. Loads it if no call has yet. */
const char *cguestfs_library_load_error (void);

#endif
