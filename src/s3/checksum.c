/* s3/checksum: HeadObject with checksum mode, for callers that check an
 * object's bytes against what the server computed (diff). */
#include <stdio.h>
#include <string.h>

#include "s3/call.h"

int s3_object_head_checksum(struct s3_client *c, const char *bucket, const char *key,
                            struct s3_object_info *info, struct s3_checksum *sum, haul_error *err)
{
    static const char *const names[] = {"crc64nvme", "crc32c", "crc32", "sha256", "sha1"};
    struct s3_call call = {.op = "HeadObject", .method = "HEAD", .bucket = bucket, .key = key};
    s3_call_header(&call, "x-amz-checksum-mode", "ENABLED");
    memset(sum, 0, sizeof *sum);
    int rc = s3_call_run(c, &call, err);
    if (rc == 0 && info)
        s3_call_info(&call, info);
    for (size_t i = 0; rc == 0 && !sum->name[0] && i < sizeof names / sizeof *names; i++) {
        char header[32];
        snprintf(header, sizeof header, "x-amz-checksum-%s", names[i]);
        if (http_response_header(&call.http, header, sum->value, sizeof sum->value))
            snprintf(sum->name, sizeof sum->name, "%s", names[i]);
    }
    if (rc == 0 && sum->name[0])
        http_response_header(&call.http, "x-amz-checksum-type", sum->type, sizeof sum->type);
    s3_call_release(&call);
    return rc;
}
