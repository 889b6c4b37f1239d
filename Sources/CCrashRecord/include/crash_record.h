#ifndef H2K_CRASH_RECORD_H
#define H2K_CRASH_RECORD_H

#include <stdint.h>

/// Installs handlers for the fatal signals (SIGILL, SIGTRAP, SIGSEGV, SIGBUS, SIGFPE, SIGABRT)
/// that write one line, "run=<run> signal=<n> time=<unix seconds>\n", at offset 0 of `fd`
/// (opened by the caller, before any crash), fsync it, then hand the signal to the action
/// that was installed before (the default, or the Swift runtime's backtracer) and re-raise it.
/// Only async-signal-safe calls are made in the handler. Returns 0, or -1 with errno set.
int h2k_crash_record_arm(int fd, int64_t run);

#endif
