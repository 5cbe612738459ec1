/* util/log: leveled logging to stderr, one line per call. */
#include "util/log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>

static atomic_int current_level = LOG_WARN;

void log_level_set(enum log_level level) { atomic_store(&current_level, level); }

enum log_level log_level_get(void) { return atomic_load(&current_level); }

void log_msg(enum log_level level, const char *fmt, ...)
{
    static const char *const names[] = {"error", "warning", "info", "debug"};
    if ((int)level > atomic_load(&current_level))
        return;
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    /* One fprintf per line so lines from threads never interleave. */
    fprintf(stderr, "haul: %s: %s\n", names[level], line);
}
