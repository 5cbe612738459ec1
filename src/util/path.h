/* util/path: small filesystem path helpers. */
#ifndef UTIL_PATH_H
#define UTIL_PATH_H

#include <sys/types.h>

/* mkdir -p: creates path and its missing parents with mode.  Returns 0, or
 * -1 with errno set. */
int path_mkdirs(const char *path, mode_t mode);

#endif
