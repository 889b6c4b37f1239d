#ifndef HYPER2KVM_CGUESTFS_LOADER_INTERNAL_H
#define HYPER2KVM_CGUESTFS_LOADER_INTERNAL_H
/* Shared by guestfs_loader.c and the generated guestfs_trampolines.c; not part of the
 * module Swift imports. */

/* The trampolines take guestfs.h's prototypes but must not be exported from hyper2kvm's
 * binaries: a definition visible to the dynamic linker could interpose on libguestfs' own
 * calls into itself. guestfs.h marks every function visibility("default") when
 * GUESTFS_GCC_VERSION >= 40000, and an explicit attribute beats the pragma, so the version
 * it sees is pinned below that (3.1 keeps its noreturn attribute; the deprecation
 * attributes, which start at 4.5, would only warn about our own definitions). guestfs.h's
 * own includes come first, so that only its declarations and ours are hidden. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#define GUESTFS_GCC_VERSION 30100
#pragma GCC visibility push(hidden)
#include <guestfs.h>

/* Loads libguestfs.so.0 once; 1 if it is loaded, else 0 with errno = ELIBACC and the
 * reason on stderr (once). */
int cguestfs_library_loaded (void);

/* The library's definition of `name`, cached in *slot. Reaching this without a loaded
 * library (a handle cannot exist then) or for a symbol the library lacks aborts with a
 * message: there is no value of the caller's return type that would mean "error". */
void *cguestfs_resolve (void **slot, const char *name);

#pragma GCC visibility pop

#endif
