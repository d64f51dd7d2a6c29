#!/usr/bin/env bash
# make bench-exporter: one exporter thread draining a queue into a loopback
# collector (the packaged nginx answering 200 to every batch).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
bench=$root/build/sdk/bench_exporter
dir=$(mktemp -d /tmp/vaquero-bench-XXXXXX)
chmod 755 "$dir"
port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

cat > "$dir/nginx.conf" <<CONF
pid $dir/nginx.pid;
error_log $dir/error.log;
worker_processes 1;
events { }
http {
    client_body_temp_path $dir/cb; proxy_temp_path $dir/p; fastcgi_temp_path $dir/f;
    uwsgi_temp_path $dir/u; scgi_temp_path $dir/s;
    access_log off;
    keepalive_requests 1000000;
    client_max_body_size 64m;
    server {
        listen 127.0.0.1:$port;
        location / { return 200 "{}"; }
    }
}
CONF

/usr/sbin/nginx -p "$dir/" -c "$dir/nginx.conf"
trap '/usr/sbin/nginx -p "$dir/" -c "$dir/nginx.conf" -s stop; rm -rf "$dir"' EXIT
sleep 0.3

for batch in 10 100 1000; do
    "$bench" "http://127.0.0.1:$port" "${SPANS:-200000}" "$batch"
done
