#!/usr/bin/env python3
"""faultproxy: a TEST DOUBLE that sits between haul and the real local S3
server (Ceph RGW on 127.0.0.1) and injects the failures no real server here
produces on demand: 503 SlowDown and other error statuses, connections reset
midway through a response, connections dropped before any answer, and
malformed response bodies.  Everything else is forwarded byte for byte (the
Host header is unchanged, so SigV4 signatures still verify upstream).

Usage: faultproxy.py UPSTREAM_PORT RULES_FILE
Prints the port it listens on (127.0.0.1 only), then serves until killed.

RULES_FILE is JSON, re-read on every request, a list of rules:
  {"method": "PUT", "match": "partNumber=2", "action": "status", "status": 503,
   "code": "SlowDown", "times": 2}
  action "status":    answer status/code without forwarding
  action "reset":     forward, relay only "after" bytes of the answer, then reset
  action "drop":      close the connection without answering
  action "hang":      read the request, never answer (until the client goes away)
  action "hold":      forward only once the file named by "until" exists (lets a
                      test act at an exact point of a transfer)
  action "malformed": forward, then replace the body with "body" (default junk)
"match" is a regular expression searched in the request line; "times" is how
many matching requests the rule hits (default: all).  A log of every request
line and the action taken is appended to RULES_FILE + ".log".
"""
import json
import os
import re
import socket
import struct
import sys
import threading
import time

UPSTREAM = ("127.0.0.1", int(sys.argv[1]))
RULES_FILE = sys.argv[2]
lock = threading.Lock()
hits = {}


def read_until(sock, buf, marker):
    while marker not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            return None, buf
        buf += chunk
    i = buf.index(marker) + len(marker)
    return buf[:i], buf[i:]


def read_exact(sock, buf, n):
    while len(buf) < n:
        chunk = sock.recv(min(1 << 20, n - len(buf)) or 1)
        if not chunk:
            return None, buf
        buf += chunk
    return buf[:n], buf[n:]


def choose_rule(request_line):
    try:
        with open(RULES_FILE) as f:
            rules = json.load(f)
    except (OSError, ValueError):
        rules = []
    method = request_line.split(" ", 1)[0]
    with lock:
        for i, r in enumerate(rules):
            if r.get("method", method) != method:
                continue
            if not re.search(r.get("match", ""), request_line):
                continue
            key = (i, json.dumps(r, sort_keys=True))
            if "times" in r and hits.get(key, 0) >= r["times"]:
                continue
            hits[key] = hits.get(key, 0) + 1
            return r
    return None


def log(line):
    with lock, open(RULES_FILE + ".log", "a") as f:
        f.write(line + "\n")


def reset(sock):
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def forward(head, body):
    """Sends one request upstream on a fresh connection; returns the raw answer."""
    lines = head.decode("latin-1").split("\r\n")
    kept = [l for l in lines[1:] if l and not l.lower().startswith("connection:")]
    raw = "\r\n".join([lines[0]] + kept + ["Connection: close", "", ""]).encode("latin-1")
    up = socket.create_connection(UPSTREAM)
    up.sendall(raw + body)
    answer = b""
    while True:
        chunk = up.recv(1 << 20)
        if not chunk:
            break
        answer += chunk
    up.close()
    return answer


def error_answer(status, code):
    body = ("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>%s</Code>"
            "<Message>injected by faultproxy</Message><RequestId>faultproxy</RequestId></Error>"
            % code).encode()
    head = ("HTTP/1.1 %d Injected\r\nContent-Type: application/xml\r\nContent-Length: %d\r\n"
            "x-amz-request-id: faultproxy\r\nConnection: close\r\n\r\n" % (status, len(body)))
    return head.encode() + body


def replace_body(answer, body):
    head, _, _ = answer.partition(b"\r\n\r\n")
    lines = [l for l in head.split(b"\r\n") if not l.lower().startswith((b"content-length:", b"transfer-encoding:"))]
    lines.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def serve(client):
    try:
        head, rest = read_until(client, b"", b"\r\n\r\n")
        if head is None:
            client.close()
            return
        request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        m = re.search(rb"\r\ncontent-length:\s*(\d+)", head, re.I)
        body, _ = read_exact(client, rest, int(m.group(1)) if m else 0)
        rule = choose_rule(request_line)
        action = rule["action"] if rule else "pass"
        log("%s -> %s" % (request_line, action))
        if action == "drop":
            reset(client)
            return
        if action == "hang":
            client.settimeout(600)
            while client.recv(65536):
                pass
            client.close()
            return
        if action == "status":
            client.sendall(error_answer(rule.get("status", 503), rule.get("code", "SlowDown")))
            client.close()
            return
        if action == "hold":
            for _ in range(6000):
                if os.path.exists(rule["until"]):
                    break
                time.sleep(0.01)
        answer = forward(head, body or b"")
        if action == "reset":
            client.sendall(answer[: rule.get("after", 100)])
            reset(client)
            return
        if action == "malformed":
            answer = replace_body(answer, rule.get("body", "<<<not xml at all").encode())
        client.sendall(answer)
        client.close()
    except OSError:
        client.close()


def main():
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    print(server.getsockname()[1], flush=True)
    while True:
        client, _ = server.accept()
        threading.Thread(target=serve, args=(client,), daemon=True).start()


if __name__ == "__main__":
    main()
