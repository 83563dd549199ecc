#!/usr/bin/env bash
# Proxy cost on loopback, measured in one script: a 200 MB download through `warden run`'s
# proxy against the same download direct (throughput ratio, target >= 0.8), and the added
# connection latency (median over 200 connections).
# Usage: scripts/bench-proxy.sh   (release build)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q --release --bin warden
W=$PWD/target/x86_64-unknown-linux-gnu/release/warden
d=$(mktemp -d /tmp/warden-bench-proxy.XXXXXX)
mkdir -p "$d/srv" "$d/ws"
head -c 200M /dev/urandom > "$d/srv/big.bin"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
(cd "$d/srv" && exec python3 -m http.server "$port" --bind 127.0.0.1 >/dev/null 2>&1) &
srv=$!
trap 'kill $srv 2>/dev/null; rm -rf "$d"' EXIT
sleep 1
echo "127.0.0.1 bench.local" > "$d/hosts"
printf '[network]\nallow = ["bench.local", "127.0.0.1"]\n' > "$d/p.toml"
cat > "$d/ws/lat.py" <<PY
import socket, statistics, sys, time, os
host, port, via = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ts = []
for _ in range(200):
    t = time.perf_counter()
    if via == "proxy":
        s = socket.create_connection(("127.0.0.1", 3128))
        s.sendall(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += s.recv(4096)
        assert b" 200" in buf.split(b"\r\n")[0], buf
    else:
        s = socket.create_connection((host, port))
    ts.append((time.perf_counter() - t) * 1e6)
    s.close()
print(f"{statistics.median(ts):.0f}")
PY
cd "$d/ws"
t0=$(date +%s%N); curl -s -o /dev/null "http://127.0.0.1:$port/big.bin"; t1=$(date +%s%N)
direct_ms=$(( (t1 - t0) / 1000000 ))
out=$("$W" run --policy "$d/p.toml" --proxy-hosts-file "$d/hosts" -- /bin/bash -c "s=\$(date +%s%N); curl -s -o /dev/null http://bench.local:$port/big.bin; e=\$(date +%s%N); echo \$(( (e - s) / 1000000 )); /usr/bin/python3 lat.py bench.local $port proxy")
proxy_ms=$(echo "$out" | sed -n 1p); proxy_lat=$(echo "$out" | sed -n 2p)
direct_lat=$(python3 lat.py 127.0.0.1 "$port" direct)
python3 - "$direct_ms" "$proxy_ms" "$direct_lat" "$proxy_lat" <<'PY'
import sys
d, p, dl, pl = map(float, sys.argv[1:])
print(f"200 MB download: direct {d:.0f} ms ({200/d*1000:.0f} MB/s), via proxy {p:.0f} ms ({200/p*1000:.0f} MB/s); throughput ratio {d/p:.2f} (target >= 0.8)")
print(f"connection latency (median of 200): direct {dl:.0f} us, via proxy CONNECT {pl:.0f} us, added {pl-dl:.0f} us")
PY
