/* job/layout: Lustre hooks through the `lfs` tool (see layout.h). */
#include "job/layout.h"

#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util/err.h"

extern char **environ;

/* Runs `lfs ARGS...` (argv[0] is "lfs"); the start of its stdout goes into
 * out when out != NULL.  what names the operation in errors. */
static int lfs_run(char *const argv[], char *out, size_t cap, const char *what, haul_error *err)
{
    int pipefd[2] = {-1, -1};
    if (out && pipe2(pipefd, O_CLOEXEC) < 0)
        return err_errno(err, errno, "lfs: pipe");
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    if (out)
        posix_spawn_file_actions_adddup2(&fa, pipefd[1], STDOUT_FILENO);
    pid_t pid;
    int rc = posix_spawnp(&pid, "lfs", &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (out)
        close(pipefd[1]);
    if (rc != 0) {
        if (out)
            close(pipefd[0]);
        return err_errno(err, rc, "lfs %s", what);
    }
    if (out) {
        size_t got = 0;
        ssize_t n;
        while (got + 1 < cap && ((n = read(pipefd[0], out + got, cap - 1 - got)) > 0 || (n < 0 && errno == EINTR)))
            got += n > 0 ? (size_t)n : 0;
        out[got] = '\0';
        close(pipefd[0]);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return err_set(err, HAUL_EIO, "lfs %s failed (exit status %d)", what,
                       WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    return 0;
}

int layout_check(const struct clone_layout *l, haul_error *err)
{
    if (l->mdt_count <= 1 && !l->stripes)
        return 0;
    char *argv[] = {"lfs", "--version", NULL};
    char out[256];
    if (lfs_run(argv, out, sizeof out, "--version", NULL) < 0)
        return err_set(err, HAUL_EUSAGE, "--mdt-count and --lustre-stripes need Lustre's `lfs` on PATH");
    return 0;
}

int layout_mkdir(const char *path, unsigned index, haul_error *err)
{
    char idx[16];
    snprintf(idx, sizeof idx, "%u", index);
    char *argv[] = {"lfs", "mkdir", "-i", idx, (char *)path, NULL};
    return lfs_run(argv, NULL, 0, "mkdir", err);
}

/* `lfs getstripe OPTION src`: one number. */
static int stripe_get(const char *src, char *option, char *out, size_t cap, haul_error *err)
{
    char *argv[] = {"lfs", "getstripe", option, (char *)src, NULL};
    if (lfs_run(argv, out, cap, "getstripe", err) < 0)
        return -HAUL_EIO;
    out[strcspn(out, " \n")] = '\0';
    if (!out[0] || strspn(out, "0123456789-") != strlen(out))
        return err_set(err, HAUL_EIO, "lfs getstripe %s %s: unexpected output", option, src);
    return 0;
}

int layout_file_create(const char *src, const char *dst, haul_error *err)
{
    char count[32], size[32];
    if (stripe_get(src, "--stripe-count", count, sizeof count, err) < 0 ||
        stripe_get(src, "--stripe-size", size, sizeof size, err) < 0)
        return -HAUL_EIO;
    char *argv[] = {"lfs", "setstripe", "-c", count, "-S", size, (char *)dst, NULL};
    return lfs_run(argv, NULL, 0, "setstripe", err);
}
