"""A Graphite plaintext receiver for the tests (a test double for carbon,
which is not installed here): listens on a free 127.0.0.1 port, writes the
port to PORTFILE, and every line received to GOOD when it follows the
protocol ("PATH VALUE TIMESTAMP"), else to BAD.

    python3 carbon.py PORTFILE GOOD BAD
"""
import re
import socket
import sys

LINE = re.compile(rb"^[A-Za-z0-9_.-]+ [0-9]+(\.[0-9]+)? [0-9]{10}$")

srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(8)
with open(sys.argv[2], "ab", buffering=0) as good, open(sys.argv[3], "ab", buffering=0) as bad:
    with open(sys.argv[1], "w") as f:  # last: the files exist once the port is known
        f.write(str(srv.getsockname()[1]))
    while True:
        conn, _ = srv.accept()
        buf = b""
        while chunk := conn.recv(65536):
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                (good if LINE.match(line) else bad).write(line + b"\n")
        if buf:
            bad.write(b"unterminated: " + buf + b"\n")
