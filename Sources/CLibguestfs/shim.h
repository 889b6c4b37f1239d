#ifndef HYPER2KVM_CLIBGUESTFS_SHIM_H
#define HYPER2KVM_CLIBGUESTFS_SHIM_H
#include <guestfs.h>
#include <string.h>

/* Swift cannot call C variadic functions, so the optional-argument calls hyper2kvm needs
 * are wrapped here with fixed parameters, built on the `_argv` forms guestfs.h declares. */

/* guestfs_create_flags(flags, ...) takes no further arguments for the flags we use. */
static inline guestfs_h *cguestfs_create_flags(unsigned flags) {
    return guestfs_create_flags(flags);
}

/* guestfs_add_drive_opts with the options hyper2kvm always sets. `format` is required so
 * qemu never probes an untrusted image; NULL `cachemode`/`discard` leave the defaults. */
static inline int cguestfs_add_drive(guestfs_h *g, const char *filename, const char *format,
                                     int readonly, const char *cachemode, const char *discard) {
    struct guestfs_add_drive_opts_argv optargs;
    memset(&optargs, 0, sizeof optargs);
    optargs.bitmask = GUESTFS_ADD_DRIVE_OPTS_FORMAT_BITMASK | GUESTFS_ADD_DRIVE_OPTS_READONLY_BITMASK;
    optargs.format = format;
    optargs.readonly = readonly;
    if (cachemode) {
        optargs.bitmask |= GUESTFS_ADD_DRIVE_OPTS_CACHEMODE_BITMASK;
        optargs.cachemode = cachemode;
    }
    if (discard) {
        optargs.bitmask |= GUESTFS_ADD_DRIVE_OPTS_DISCARD_BITMASK;
        optargs.discard = discard;
    }
    return guestfs_add_drive_opts_argv(g, filename, &optargs);
}

/* guestfs_fstrim(g, mountpoint, ...) over the whole filesystem. */
static inline int cguestfs_fstrim(guestfs_h *g, const char *mountpoint) {
    struct guestfs_fstrim_argv optargs;
    memset(&optargs, 0, sizeof optargs);
    return guestfs_fstrim_argv(g, mountpoint, &optargs);
}

/* guestfs_selinux_relabel(g, specfile, path, ...) with `force` (reset every context, as
 * setfiles -F does: files we wrote in the appliance carry no label or a wrong one). */
static inline int cguestfs_selinux_relabel(guestfs_h *g, const char *specfile, const char *path) {
    struct guestfs_selinux_relabel_argv optargs;
    memset(&optargs, 0, sizeof optargs);
    optargs.bitmask = GUESTFS_SELINUX_RELABEL_FORCE_BITMASK;
    optargs.force = 1;
    return guestfs_selinux_relabel_argv(g, specfile, path, &optargs);
}

/* guestfs_hivex_open(g, filename, ...) with the write flag (the Windows registry editor). */
static inline int cguestfs_hivex_open(guestfs_h *g, const char *filename, int write) {
    struct guestfs_hivex_open_argv optargs;
    memset(&optargs, 0, sizeof optargs);
    optargs.bitmask = GUESTFS_HIVEX_OPEN_WRITE_BITMASK;
    optargs.write = write;
    return guestfs_hivex_open_argv(g, filename, &optargs);
}

#endif
