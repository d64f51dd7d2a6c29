#!/usr/bin/python3
"""make demo: nginx with ngx_vaquero_module in front of a FastAPI app.

Starts, all on loopback and under a temporary directory:
  - a local collector that accepts Vaquero batches (POST /api/v1/traces/batch),
  - the FastAPI app of t/app/app.py under uvicorn,
  - nginx (the packaged binary) loading build/ngx_http_vaquero_module.so,
then sends some traffic through nginx, shows the traces that reached the
collector, and stops everything it started.
"""

import http.client
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODULE = os.path.join(ROOT, "build", "ngx_http_vaquero_module.so")
NGINX = "/usr/sbin/nginx"

received = []           # (headers, decoded body) of each batch
received_lock = threading.Lock()


class Collector(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"       # keep-alive, as the exporter expects

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        ok = self.path.endswith("/api/v1/traces/batch")
        if ok:
            with received_lock:
                received.append((dict(self.headers), json.loads(body)))
        reply = b'{"status":"ok"}' if ok else b'{"error":"not found"}'
        self.send_response(200 if ok else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


NGINX_CONF = """
load_module {module};
pid {dir}/nginx.pid;
error_log {dir}/error.log notice;
worker_processes 2;
events {{ }}
http {{
    client_body_temp_path {dir}/client_body_temp;
    proxy_temp_path {dir}/proxy_temp;
    fastcgi_temp_path {dir}/fastcgi_temp;
    uwsgi_temp_path {dir}/uwsgi_temp;
    scgi_temp_path {dir}/scgi_temp;
    access_log {dir}/access.log;

    vaquero_endpoint http://127.0.0.1:{collector};
    vaquero_api_key demo-key;
    vaquero_project_id demo-project;
    vaquero_service_name demo-edge;
    vaquero_mode development;
    vaquero_flush_interval 300ms;

    upstream fastapi {{
        server 127.0.0.1:{backend};
        keepalive 8;
    }}

    server {{
        listen 127.0.0.1:{http};
        vaquero on;

        location /api/ {{
            vaquero_agent_name fastapi-backend;
            vaquero_attribute client.user $http_x_user_id;
            proxy_pass http://fastapi;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}

        location = /health {{
            vaquero off;
            return 200 "ok\\n";
        }}
    }}
}}
"""


def request(port, method, path, body=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    resp.read()
    conn.close()
    return resp.status


def show(spans_by_trace):
    print()
    print(f"{len(spans_by_trace)} traces arrived at the local Vaquero endpoint:")
    print()
    order = sorted(spans_by_trace, key=lambda t: min(s["start"] for s in spans_by_trace[t]))
    for trace_id in order:
        spans = spans_by_trace[trace_id]
        children = {}
        roots = []
        ids = {s["id"] for s in spans}
        for s in spans:
            if s["parent"] in ids:
                children.setdefault(s["parent"], []).append(s)
            else:
                roots.append(s)

        def line(s, prefix, last):
            branch = "" if prefix is None else prefix + ("└─ " if last else "├─ ")
            a = s["attributes"]
            mark = "✗" if s["status"] == "failed" else "✓"
            print(f"{branch}{mark} {s['name']:<22} {a.get('status_code', ''):>3}  "
                  f"{a.get('response_time_ms', 0):>8.3f} ms  "
                  f"{a.get('url', '')}")
            kids = children.get(s["id"], [])
            for i, k in enumerate(kids):
                line(k, (prefix or "") + ("   " if last else "│  "), i == len(kids) - 1)

        print(f"trace {trace_id}")
        for r in roots:
            line(r, "", True)
    print()


def main():
    if not os.path.exists(MODULE):
        sys.exit(f"{MODULE} is missing: run make")

    tmp = tempfile.mkdtemp(prefix="vaquero-demo-")
    os.chmod(tmp, 0o755)
    ports = {"collector": free_port(), "backend": free_port(), "http": free_port()}
    procs = []

    collector = http.server.ThreadingHTTPServer(("127.0.0.1", ports["collector"]), Collector)
    threading.Thread(target=collector.serve_forever, daemon=True).start()

    try:
        print(f"collector  http://127.0.0.1:{ports['collector']}/api/v1/traces/batch")
        backend = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "app:app", "--app-dir",
             os.path.join(ROOT, "t", "app"), "--host", "127.0.0.1",
             "--port", str(ports["backend"]), "--log-level", "warning"],
            start_new_session=True)
        procs.append(backend)
        wait_port(ports["backend"])
        print(f"FastAPI    http://127.0.0.1:{ports['backend']} (uvicorn, t/app/app.py)")

        with open(os.path.join(tmp, "nginx.conf"), "w") as f:
            f.write(NGINX_CONF.format(module=MODULE, dir=tmp, **ports))
        subprocess.run([NGINX, "-p", tmp + "/", "-c", os.path.join(tmp, "nginx.conf")],
                       check=True)
        wait_port(ports["http"])
        print(f"nginx      http://127.0.0.1:{ports['http']} (with ngx_http_vaquero_module)")
        print()

        traffic = [
            ("GET", "/api/items/1", None, {"X-User-Id": "u-17"}),
            ("GET", "/api/items/2", None, {"X-User-Id": "u-42"}),
            ("POST", "/api/items", json.dumps({"name": "rope"}),
             {"Content-Type": "application/json", "X-User-Id": "u-42"}),
            ("GET", "/api/items/99", None, {}),
            ("GET", "/api/slow?ms=120", None, {}),
            ("GET", "/api/boom", None, {}),
            ("GET", "/health", None, {}),
        ]
        for method, path, body, headers in traffic:
            status = request(ports["http"], method, path, body, headers)
            print(f"  {method:<4} {path:<18} -> {status}")

        expected = len(traffic) - 1       # /health is not traced
        deadline = time.time() + 15
        while time.time() < deadline:
            with received_lock:
                n = sum(len(b["traces"]) + len(b["agents"]) for _, b in received)
            if n >= expected:
                break
            time.sleep(0.1)

        by_trace = {}
        with received_lock:
            batches = list(received)
        for headers, body in batches:
            for t in body["traces"]:
                by_trace.setdefault(t["trace_id"], []).append({
                    "id": t["raw_data"]["metadata"]["span_id"], "parent": None,
                    "start": t["start_time"],
                    "name": t["name"], "status": t["status"],
                    "attributes": t["raw_data"]["attributes"]})
            for a in body["agents"]:
                by_trace.setdefault(a["trace_id"], []).append({
                    "id": a["agent_id"], "parent": a["raw_data"]["parent_span_id"],
                    "start": a["start_time"],
                    "name": a["name"], "status": a["status"],
                    "attributes": a["raw_data"]["attributes"]})

        show(by_trace)
        if batches:
            h = batches[0][0]
            print(f"{len(batches)} batch request(s); the first carried "
                  f"Authorization: {h.get('Authorization')}, "
                  f"X-Project-ID: {h.get('X-Project-ID')}, "
                  f"User-Agent: {h.get('User-Agent')}")
            print()
            print("one span as it was sent:")
            print(json.dumps(batches[0][1]["traces"][0], indent=2)[:1800])

        count = sum(len(v) for v in by_trace.values())
        if count != expected:
            sys.exit(f"expected {expected} spans, got {count}")

    finally:
        pid_file = os.path.join(tmp, "nginx.pid")
        if os.path.exists(pid_file):
            subprocess.run([NGINX, "-p", tmp + "/", "-c", os.path.join(tmp, "nginx.conf"),
                            "-s", "quit"], stderr=subprocess.DEVNULL)
            for _ in range(100):
                if not os.path.exists(pid_file):
                    break
                time.sleep(0.1)
        for p in procs:
            os.killpg(p.pid, signal.SIGTERM)
            p.wait()
        collector.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)
        print("\nstopped nginx, the FastAPI app and the collector")


if __name__ == "__main__":
    main()
