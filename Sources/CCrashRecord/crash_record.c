// The crash record: proof, for the next start, that the daemon died of its own fault
// (a trap, a bad access) rather than of SIGKILL or a power cut, which leave nothing.
// A signal handler may only call async-signal-safe functions, hence C and no allocation.
#include "crash_record.h"

#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <time.h>
#include <unistd.h>

static const int fatal_signals[] = {SIGILL, SIGTRAP, SIGSEGV, SIGBUS, SIGFPE, SIGABRT};
#define FATAL_COUNT (sizeof fatal_signals / sizeof fatal_signals[0])

static int record_fd = -1;
static int64_t record_run = 0;
static struct sigaction previous_actions[FATAL_COUNT];

/// Appends the decimal digits of `value` (>= 0) at `out`; returns how many were written.
static size_t put_decimal(char *out, int64_t value) {
    char digits[24];
    size_t count = 0;
    if (value < 0) value = 0;
    do {
        digits[count++] = (char)('0' + (int)(value % 10));
        value /= 10;
    } while (value > 0 && count < sizeof digits);
    for (size_t i = 0; i < count; i++) out[i] = digits[count - 1 - i];
    return count;
}

static size_t put_text(char *out, const char *text) {
    size_t count = 0;
    while (text[count] != '\0') {
        out[count] = text[count];
        count++;
    }
    return count;
}

static void on_fatal_signal(int number) {
    int saved_errno = errno;
    // Only the first crashing thread writes: a second one must not race the first's line.
    int fd = __atomic_exchange_n(&record_fd, -1, __ATOMIC_SEQ_CST);
    if (fd >= 0) {
        char line[96];
        size_t length = 0;
        struct timespec now = {0, 0};
        clock_gettime(CLOCK_REALTIME, &now);
        length += put_text(line + length, "run=");
        length += put_decimal(line + length, record_run);
        length += put_text(line + length, " signal=");
        length += put_decimal(line + length, number);
        length += put_text(line + length, " time=");
        length += put_decimal(line + length, (int64_t)now.tv_sec);
        line[length++] = '\n';
        (void)pwrite(fd, line, length, 0);
        (void)fsync(fd);
    }
    // Hand the signal on: the previous action (core dump, the Swift backtrace) still happens.
    for (size_t i = 0; i < FATAL_COUNT; i++) {
        if (fatal_signals[i] == number) {
            struct sigaction action = previous_actions[i];
            if (action.sa_handler == SIG_IGN) action.sa_handler = SIG_DFL;
            sigaction(number, &action, NULL);
        }
    }
    errno = saved_errno;
    // Pending until the handler returns; a synchronous fault also recurs on return.
    raise(number);
}

int h2k_crash_record_arm(int fd, int64_t run) {
    record_run = run;
    __atomic_store_n(&record_fd, fd, __ATOMIC_SEQ_CST);
    for (size_t i = 0; i < FATAL_COUNT; i++) {
        struct sigaction action;
        action.sa_handler = on_fatal_signal;
        sigemptyset(&action.sa_mask);
        action.sa_flags = 0;
        if (sigaction(fatal_signals[i], &action, &previous_actions[i]) != 0) return -1;
    }
    return 0;
}
