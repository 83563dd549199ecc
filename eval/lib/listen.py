#!/usr/bin/env python3
"""Host-side listener for network cases.

usage: listen.py KIND ADDR PORT OUT
KIND: tcp, tcp6, udp, unix (ADDR is a path), abstract (ADDR is a name).
Appends every byte received to OUT and creates OUT.ready once listening. Runs until killed
(the runner kills the setup's process group when the case ends).
"""
import os, socket, sys, threading

kind, addr, port, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]

def record(data):
    with open(out, "ab") as f:
        f.write(data)

def serve_stream(s):
    s.listen(64)
    open(out + ".ready", "w").close()
    while True:
        c, _ = s.accept()
        def h(c=c):
            c.settimeout(5)
            try:
                while True:
                    d = c.recv(4096)
                    if not d:
                        break
                    record(d)
                    if b"HTTP/" in d:
                        c.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
                        break
            except OSError:
                pass
            c.close()
        threading.Thread(target=h, daemon=True).start()

if kind in ("tcp", "tcp6"):
    fam = socket.AF_INET6 if kind == "tcp6" else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if kind == "tcp6":
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s.bind((addr, port))
    serve_stream(s)
elif kind == "udp":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((addr, port))
    open(out + ".ready", "w").close()
    while True:
        d, _ = s.recvfrom(65535)
        record(d)
elif kind in ("unix", "abstract"):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(("\0" + addr) if kind == "abstract" else addr)
    serve_stream(s)
else:
    sys.exit("unknown kind " + kind)
