/* util/path: small filesystem path helpers. */
#ifndef UTIL_PATH_H
#define UTIL_PATH_H

#include <sys/types.h>

/* mkdir -p: creates path and its missing parents with mode.  Returns 0, or
 * -1 with errno set. */
int path_mkdirs(const char *path, mode_t mode);

/* Names a state file: STATE_DIR/SUBDIR/<hex SHA-256 of the n NUL-terminated
 * parts, first 2*hex_bytes digits><suffix>, creating STATE_DIR/SUBDIR.  The
 * NUL separators make different part lists give different names.  Returns
 * 0, or -1 with errno set. */
int path_state_file(const char *state_dir, const char *subdir, const char *const *parts, size_t n,
                    size_t hex_bytes, const char *suffix, char *out, size_t cap);

#endif
