/* examples/haul_stream: the library API in a few lines.
 *   haul_stream put s3://bucket/key < data    (stream stdin into an object)
 *   haul_stream get s3://bucket/key > data    (stream an object to stdout)
 * Configuration comes from the usual AWS environment variables. */
#include <haul/haul.h>

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int copy_in(haul_stream *s)
{
    static char buf[1 << 16];
    ssize_t n;
    while ((n = read(STDIN_FILENO, buf, sizeof buf)) > 0)
        if (haul_write(s, buf, (size_t)n) != n)
            return -1;
    return n < 0 ? -1 : 0;
}

static int copy_out(haul_stream *s)
{
    static char buf[1 << 16];
    ssize_t n;
    while ((n = haul_read(s, buf, sizeof buf)) > 0)
        if (fwrite(buf, 1, (size_t)n, stdout) != (size_t)n)
            return -1;
    return n < 0 ? -1 : 0;
}

int main(int argc, char **argv)
{
    if (argc != 3 || (strcmp(argv[1], "put") != 0 && strcmp(argv[1], "get") != 0)) {
        fprintf(stderr, "usage: %s put|get s3://BUCKET/KEY\n", argv[0]);
        return 2;
    }
    bool put = strcmp(argv[1], "put") == 0;
    haul_error err = {0};
    haul_client *client = haul_client_new(NULL, &err);
    haul_stream *s = client ? haul_open(client, argv[2], put ? "w" : "r", &err) : NULL;
    if (!s) {
        fprintf(stderr, "%s\n", err.msg);
        haul_client_free(client);
        return 1;
    }
    int copied = put ? copy_in(s) : copy_out(s);
    if (copied < 0 && put)
        haul_abort(s); /* nothing is left on the server */
    int rc = copied < 0 && put ? -1 : haul_close(s, &err);
    if (rc < 0 || copied < 0)
        fprintf(stderr, "%s\n", err.msg[0] ? err.msg : "copy failed");
    fflush(stdout);
    haul_client_free(client);
    return rc < 0 || copied < 0 ? 1 : 0;
}
