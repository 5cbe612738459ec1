#!/usr/bin/env python3
"""Prints the botocore-signed S3 cases pasted into tests/unit/test_sigv4.c.

Each request is signed by botocore.auth.S3SigV4Auth.add_auth with the clock
pinned (botocore.auth.get_current_datetime patched); the canonical request
botocore signed (recorded as add_auth builds it) and the Authorization header
it set are printed as C initialisers.  Run:  python3 tests/unit/gen_sigv4_botocore.py
The C test never runs Python; rerun this only to add or change a case.
"""
import datetime
import hashlib
import base64
from unittest import mock
from urllib.parse import quote

import botocore
import botocore.auth
from botocore.auth import S3SigV4Auth, _host_from_url
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

ACCESS = "AKIAIOSFODNN7EXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
TOKEN = "FwoGZXIvYXdzEXAMPLE//////////wEaDHhhdWwtdGVzdC10b2tlbiKaAUN0+/Z=="
LEAP = datetime.datetime(2024, 2, 29, 23, 59, 58)
AFTER_2038 = datetime.datetime(2038, 1, 19, 3, 14, 8)
XML = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Delete><Quiet>true</Quiet>'
       b'<Object><Key>a b/\xc3\xbc.txt</Key></Object></Delete>')


def md5_b64(body):
    return base64.b64encode(hashlib.md5(body).digest()).decode()


# name, method, endpoint, region, path prefix (bucket for path style), key,
# botocore query (str: in the URL as is; list: params botocore encodes),
# query as the C test passes it, headers, body, unsigned payload, token, time
CASES = [
    dict(name="put_unicode_key_meta", method="PUT", endpoint="http://127.0.0.1:9000",
         region="us-east-1", prefix="/hpc-archive",
         key="run 42/r\u00e9sum\u00e9 \u2013 \u00fcn\u00efc\u00f8d\u00e9 \u65e5\u672c.dat",
         query="", c_query="",
         headers=[("Content-Type", "application/octet-stream"),
                  ("x-amz-meta-mtime", "1709251198.123456789"),
                  ("x-amz-meta-uid", "1000"),
                  ("X-Amz-Meta-Mode", "0100644"),
                  ("x-amz-meta-note", "  two   spaces\tand a tab  ")],
         body=b"hello haul\n"),
    dict(name="get_reserved_chars_unsigned", method="GET",
         endpoint="https://haul-test.s3.eu-west-2.amazonaws.com", region="eu-west-2",
         prefix="", key="odd/a+b%c?d#e~f=g&h:i@j$k;l,m(n)o'p*q!r[s]t.txt",
         query="", c_query="", headers=[("Range", "bytes=0-1048575")],
         body=b"", unsigned=True),
    dict(name="upload_part_session_token", method="PUT", endpoint="http://127.0.0.1:9000",
         region="us-east-1", prefix="/hpc-archive", key="big/file 1.bin",
         query="uploadId=2~iCw_lDY8VoBYQV0wR0aw.b4Aq7t-NDo2nYxmMXI_&partNumber=3",
         c_query="uploadId=2~iCw_lDY8VoBYQV0wR0aw.b4Aq7t-NDo2nYxmMXI_&partNumber=3",
         headers=[("Content-MD5", md5_b64(b"part three\n" * 100)),
                  ("Content-Length", str(len(b"part three\n" * 100)))],
         body=b"part three\n" * 100, token=TOKEN),
    dict(name="list_v2_encoded", method="GET", endpoint="http://127.0.0.1:9000",
         region="us-east-1", prefix="/hpc-archive", key=None,
         query=[("list-type", "2"), ("prefix", "a/b"),
                ("continuation-token",
                 "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wXLLTBZpPhCmiIXZ5+WvyPXPd/Na3S5ri8oCCbrA=="),
                ("delimiter", "/"), ("max-keys", "1000")],
         c_query="list-type=2&prefix=a%2Fb&continuation-token=1ueGcxLPRx1Tr%2FXYExHnhbYLgveDs2J"
                 "%2FwXLLTBZpPhCmiIXZ5%2BWvyPXPd%2FNa3S5ri8oCCbrA%3D%3D&delimiter=%2F&max-keys=1000",
         headers=[], body=b""),
    # The same request with '/' and '=' left as they may travel in a query:
    # the signer must canonicalise them to what S3 (and botocore) sign.
    dict(name="list_v2_light_encoding", method="GET", endpoint="http://127.0.0.1:9000",
         region="us-east-1", prefix="/hpc-archive", key=None,
         query=[("list-type", "2"), ("prefix", "a/b"),
                ("continuation-token",
                 "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wXLLTBZpPhCmiIXZ5+WvyPXPd/Na3S5ri8oCCbrA=="),
                ("delimiter", "/"), ("max-keys", "1000")],
         c_query="max-keys=1000&delimiter=/&prefix=a/b&list-type=2&continuation-token="
                 "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wXLLTBZpPhCmiIXZ5%2bWvyPXPd/Na3S5ri8oCCbrA==",
         headers=[], body=b""),
    dict(name="create_multipart_uploads", method="POST", endpoint="http://127.0.0.1:9000",
         region="us-east-1", prefix="/hpc-archive", key="dir/~tilde file.txt",
         query="uploads", c_query="uploads",
         headers=[("Content-Type", "text/plain"), ("x-amz-storage-class", "DEEP_ARCHIVE"),
                  ("x-amz-meta-gid", "100"), ("X-Amz-Meta-Tag", "a"),
                  ("x-amz-meta-tag", "  b   c ")],
         body=b""),
    dict(name="delete_objects", method="POST", endpoint="https://s3.us-east-1.amazonaws.com",
         region="us-east-1", prefix="/hpc-archive", key=None, query="delete", c_query="delete",
         headers=[("Content-Type", "application/xml"), ("Content-MD5", md5_b64(XML))],
         body=XML),
    # Sorted by name, then value: "a" < "a-b" although "a-b=" < "a=" as strings.
    dict(name="query_sort_name_then_value", method="GET", endpoint="http://127.0.0.1:9000",
         region="us-east-1", prefix="/hpc-archive", key=None,
         query="a-b=1&a=2&a=10&A=3&versions", c_query="a-b=1&a=2&a=10&A=3&versions",
         headers=[], body=b""),
    dict(name="copy_object_after_2038", method="PUT", endpoint="http://127.0.0.1:9000",
         region="us-east-1", prefix="/hpc-archive", key="copy/dst key+plus.txt",
         query="", c_query="",
         headers=[("x-amz-copy-source", "/src-bucket/a%20b/%C3%BC.txt"),
                  ("x-amz-metadata-directive", "REPLACE")],
         body=b"", unsigned=True, token=TOKEN, when=AFTER_2038),
]


class RecordingAuth(S3SigV4Auth):
    """S3SigV4Auth keeping the canonical request it signed."""

    def canonical_request(self, request):
        self.signed_canonical = super().canonical_request(request)
        return self.signed_canonical


def c_str(s):
    """A C string literal: octal escapes for non-ASCII (3 digits, so a
    following digit is never swallowed), and '?' escaped (no trigraphs)."""
    out = []
    for b in s.encode("utf-8"):
        c = chr(b)
        if c in '\\"?':
            out.append("\\" + c)
        elif c == "\n":
            out.append("\\n")
        elif c == "\t":
            out.append("\\t")
        elif 0x20 <= b < 0x7F:
            out.append(c)
        else:
            out.append("\\%03o" % b)
    return '"' + "".join(out) + '"'


def c_lines(s, indent="        "):
    """Long strings broken after each newline, one literal per line."""
    parts = s.split("\n")
    lits = [c_str(p + "\n") for p in parts[:-1]] + [c_str(parts[-1])]
    return ("\n" + indent).join(lits)


def sign(case):
    creds = Credentials(ACCESS, SECRET, case.get("token"))
    path = case["prefix"]
    if case["key"] is not None:
        path += "/" + quote(case["key"], safe="/~")
    url = case["endpoint"] + (path or "/")
    params = {}
    if isinstance(case["query"], str):
        url += "?" + case["query"] if case["query"] else ""
    else:
        params = case["query"]
    req = AWSRequest(method=case["method"], url=url, data=case["body"], params=params)
    for name, value in case["headers"]:
        req.headers[name] = value  # HTTPHeaders appends: repeated names stay repeated
    if case.get("unsigned"):
        req.context["client_config"] = Config(s3={"payload_signing_enabled": False})
    auth = RecordingAuth(creds, "s3", case["region"])
    when = case.get("when", LEAP)
    with mock.patch.object(botocore.auth, "get_current_datetime", return_value=when):
        auth.add_auth(req)
    canonical = auth.signed_canonical
    headers = [(k, v) for k, v in req.headers.items() if k != "Authorization"]
    if "host" not in {k.lower() for k, _ in headers}:
        headers.insert(0, ("Host", _host_from_url(req.url)))
    epoch = int(when.replace(tzinfo=datetime.timezone.utc).timestamp())
    return path, headers, canonical, req.headers["Authorization"], epoch


def emit(case):
    path, headers, canonical, authz, epoch = sign(case)
    n = case["name"]
    print(f"static const struct sigv4_header bc_{n}_headers[] = {{")
    for k, v in headers:
        print(f"    {{{c_str(k)}, {c_str(v)}}},")
    print("};")
    print(f"static struct botocore_case bc_{n} = {{")
    print(f"    .prefix = {c_str(case['prefix'])},")
    print(f"    .key = {c_str(case['key']) if case['key'] is not None else 'NULL'},")
    print(f"    .uri = {c_str(path or '/')},")
    print(f"    .req = {{{c_str(case['method'])}, NULL, {c_str(case['c_query'])},")
    payload = canonical.rsplit("\n", 1)[1]
    print(f"            bc_{n}_headers, {len(headers)}, {c_str(payload)}}},")
    print(f"    .region = {c_str(case['region'])},")
    print(f"    .time = {epoch}, /* {case.get('when', LEAP).isoformat()}Z */")
    print(f"    .canonical = {c_lines(canonical)},")
    # botocore separates the three parts with ", "; haul (like the S3 docs)
    # with ","; AWS accepts both, so only the separators are rewritten.
    print(f"    .authorization = {c_lines(authz.replace(', ', ','))},")
    print("};")
    print()


def main():
    print("/* Generated by tests/unit/gen_sigv4_botocore.py with botocore "
          f"{botocore.__version__} (S3SigV4Auth, clock pinned). */")
    for case in CASES:
        emit(case)
    print("#define BOTOCORE_TESTS \\")
    print(" \\\n".join(f"    BOTOCORE_TEST(bc_{c['name']})," for c in CASES))


if __name__ == "__main__":
    main()
