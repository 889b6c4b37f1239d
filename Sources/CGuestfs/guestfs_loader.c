/* Loads libguestfs on first use, so that processes which never fix a guest (the idle
 * daemon, `status`, `history`, ...) do not map it and the ~60 libraries it depends on. */

#include "guestfs_loader_internal.h"
#include "guestfs_loader.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef CGUESTFS_LIBRARY  /* overridable only to test the failure path */
#define CGUESTFS_LIBRARY "libguestfs.so.0"
#endif

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static void *library;
static char load_error[512];

static void
load_library (void)
{
  /* RTLD_LOCAL: libguestfs' dependencies stay out of the global symbol scope. It is never
   * unloaded: it registers atexit handlers that close open handles. */
  library = dlopen (CGUESTFS_LIBRARY, RTLD_NOW | RTLD_LOCAL);
  if (library == NULL) {
    const char *reason = dlerror ();
    snprintf (load_error, sizeof load_error,
              CGUESTFS_LIBRARY " could not be loaded: %s; install libguestfs0",
              reason ? reason : "unknown error");
    fprintf (stderr, "hyper2kvm: %s\n", load_error);
  }
}

int
cguestfs_library_loaded (void)
{
  pthread_once (&load_once, load_library);
  if (library == NULL) {
    errno = ELIBACC;
    return 0;
  }
  return 1;
}

const char *
cguestfs_library_load_error (void)
{
  return cguestfs_library_loaded () ? NULL : load_error;
}

void *
cguestfs_resolve (void **slot, const char *name)
{
  void *symbol = __atomic_load_n (slot, __ATOMIC_ACQUIRE);
  if (symbol != NULL)
    return symbol;
  if (!cguestfs_library_loaded ()) {
    fprintf (stderr, "hyper2kvm: %s called without a libguestfs handle: %s\n", name, load_error);
    abort ();
  }
  /* dlsym on the library's own handle finds its definition, never these trampolines. */
  symbol = dlsym (library, name);
  if (symbol == NULL) {
    fprintf (stderr, "hyper2kvm: " CGUESTFS_LIBRARY " has no %s (older than the guestfs.h "
             "hyper2kvm was built with): %s\n", name, dlerror ());
    abort ();
  }
  __atomic_store_n (slot, symbol, __ATOMIC_RELEASE);
  return symbol;
}
