#!/usr/bin/python3
"""make demo: nginx with ngx_vaquero_module in front of a FastAPI app.

Starts, all on loopback and under a temporary directory:
  - a local collector that accepts Vaquero batches (POST /api/v1/traces/batch),
  - the FastAPI app of t/app/app.py under uvicorn, reporting its own spans to
    the same collector (VAQUERO_ENDPOINT),
  - nginx (the packaged binary) loading build/ngx_http_vaquero_module.so,
then sends traffic through nginx (plain requests, retried upstreams, an
auth_request, a request that arrives with a client traceparent), shows each
trace as one tree joined across nginx and FastAPI, checks the joins, and
stops everything it started.  Exits non-zero when a check fails.
"""

import datetime
import http.client
import http.server
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODULE = os.path.join(ROOT, "build", "ngx_http_vaquero_module.so")
NGINX = "/usr/sbin/nginx"
APP_AGENT = "fastapi-app"               # the app's VAQUERO_AGENT_NAME
WAIT_SPANS_S = 20

received = []           # (headers, decoded body) of each batch
received_cond = threading.Condition()


class Collector(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"       # keep-alive, as the exporter expects

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        ok = self.path.endswith("/api/v1/traces/batch")
        if ok:
            with received_cond:
                received.append((dict(self.headers), json.loads(body)))
                received_cond.notify_all()
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


def closed_port():
    """A loopback port that refuses connections, held so no one takes it."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))            # bound, never listening: RST on connect
    return s, s.getsockname()[1]


def wait_port(port, proc=None, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the process for port {port} exited "
                               f"with status {proc.returncode}")
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
    vaquero_flush_interval 100ms;

    upstream fastapi {{
        server 127.0.0.1:{backend};
        keepalive 8;
    }}

    # every request tries a port that refuses connections first, then the app
    upstream fastapi_failover {{
        server 127.0.0.1:{closed} max_fails=0;
        server 127.0.0.1:{backend} backup;
    }}

    # ... or a backend that answers 502 first, then the app
    upstream fastapi_flaky {{
        server 127.0.0.1:{broken} max_fails=0;
        server 127.0.0.1:{backend} backup;
    }}

    server {{
        # the broken backend (not traced)
        listen 127.0.0.1:{broken};
        return 502;
    }}

    server {{
        listen 127.0.0.1:{http};

        vaquero on;
        vaquero_trace_context propagate;    # the default: continue, and send upstream
        vaquero_upstream_spans on;          # the default: a span per upstream attempt

        # the trace id each response belongs to (the demo finds traces by it)
        add_header X-Trace-Id $vaquero_trace_id always;

        proxy_http_version 1.1;
        proxy_set_header Connection "";

        location /api/ {{
            vaquero_agent_name edge-api;
            vaquero_attribute client.user $http_x_user_id;
            proxy_pass http://fastapi;
        }}

        location /failover/ {{
            vaquero_agent_name edge-failover;
            proxy_next_upstream error timeout;
            proxy_pass http://fastapi_failover/api/;
        }}

        location /flaky/ {{
            vaquero_agent_name edge-flaky;
            proxy_next_upstream error timeout http_502;
            proxy_pass http://fastapi_flaky/api/;
        }}

        location /private/ {{
            vaquero_agent_name edge-private;
            auth_request /auth;
            proxy_pass http://fastapi/api/;
        }}

        location = /auth {{
            internal;
            proxy_pass http://fastapi/api/auth;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header Connection "";
        }}

        location = /health {{
            vaquero off;
            return 200 "ok\\n";
        }}
    }}
}}
"""

CLIENT_TRACE = secrets.token_hex(16)
CLIENT_SPAN = secrets.token_hex(8)

# what the demo sends, and what each request's trace must hold:
# "clients" nginx client spans (upstream attempts), "app" FastAPI spans
TRAFFIC = [
    dict(path="/api/items/1", headers={"X-User-Id": "u-17"},
         status=200, clients=1, app=1),
    dict(method="POST", path="/api/items", body=json.dumps({"name": "rope"}),
         headers={"Content-Type": "application/json", "X-User-Id": "u-42"},
         status=201, clients=1, app=1),
    dict(path="/api/items/99", status=404, clients=1, app=1),
    dict(path="/api/slow?ms=120", status=200, clients=1, app=1),
    dict(path="/api/boom", status=500, clients=1, app=1),
    dict(path="/failover/items/2", status=200, clients=2, app=1,
         first_error="connect_error",
         what="retried: the first server refuses the connection"),
    dict(path="/flaky/items/3", status=200, clients=2, app=1,
         first_error="HTTPError",
         what="retried: the first server answers 502"),
    dict(path="/private/items/1", headers={"X-User-Id": "u-17"},
         status=200, clients=2, app=2, what="auth_request: allowed"),
    dict(path="/private/items/2", status=401, clients=1, app=1,
         what="auth_request: denied (no X-User-Id)"),
    dict(path="/api/items/3",
         headers={"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"},
         status=200, clients=1, app=1, client_parent=CLIENT_SPAN,
         what="arrives with the client's traceparent"),
    dict(path="/health", status=200, traced=False, what="not traced"),
]


def request(port, r):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request(r.get("method", "GET"), r["path"], body=r.get("body"),
                 headers=r.get("headers", {}))
    resp = conn.getresponse()
    resp.read()
    conn.close()
    return resp.status, resp.getheader("X-Trace-Id", "")


def as_uuid(trace_hex):
    return str(uuid.UUID(hex=trace_hex))


def micros(iso):
    t = datetime.datetime.strptime(iso, "%Y-%m-%dT%H:%M:%S.%fZ")
    return int(t.replace(tzinfo=datetime.timezone.utc).timestamp()) * 1_000_000 \
        + t.microsecond


def collect(batches):
    """Every span received, one flat dict each, grouped by trace id."""
    by_trace = {}
    for headers, body in batches:
        source = "app" if "fastapi" in headers.get("User-Agent", "") else "nginx"
        for t in body.get("traces", []):
            raw = t["raw_data"]
            by_trace.setdefault(t["trace_id"], []).append({
                "source": source, "item": t, "list": "traces",
                "id": raw["metadata"]["span_id"], "parent": None,
                "agent": raw["metadata"]["agent_name"], "name": t["name"],
                "kind": "server", "status": t["status"],
                "start": micros(t["start_time"]), "end": micros(t["end_time"]),
                "attributes": raw["attributes"]})
        for a in body.get("agents", []):
            raw = a["raw_data"]
            by_trace.setdefault(a["trace_id"], []).append({
                "source": source, "item": a, "list": "agents",
                "id": a["agent_id"], "parent": raw["parent_span_id"],
                "agent": a["name"], "name": raw.get("span_name", a["name"]),
                "kind": raw.get("span_kind", "server"), "status": a["status"],
                "error": (a.get("error_type"), a.get("error_message")),
                "start": micros(a["start_time"]), "end": micros(a["end_time"]),
                "attributes": raw["attributes"]})
    return by_trace


def show_trace(spans, bar_width=24):
    """One trace as a tree, children under parents, in start order,
    with a waterfall bar: where in the trace each span spent its time."""
    ids = {s["id"] for s in spans}
    children = {}
    roots = []
    for s in sorted(spans, key=lambda s: s["start"]):
        if s["parent"] in ids:
            children.setdefault(s["parent"], []).append(s)
        else:
            roots.append(s)

    t0 = min(s["start"] for s in spans)
    total = max(max(s["end"] for s in spans) - t0, 1)

    def bar(s):
        a = round((s["start"] - t0) * bar_width / total)
        b = max(round((s["end"] - t0) * bar_width / total), a + 1)
        b = min(b, bar_width)
        a = min(a, b - 1)
        return "·" * a + "█" * (b - a) + "·" * (bar_width - b)

    def label(s):
        a = s["attributes"]
        if s["kind"] == "client":
            return (f"{s['agent']} attempt {a.get('attempt', '?')} "
                    f"→ {a.get('host', '?')}:{a.get('server_port', '?')}")
        who = "FastAPI" if s["source"] == "app" else "nginx"
        return f"{s['name']}  [{who} {s['agent']}]"

    def line(s, prefix, last, top):
        branch = "" if top else ("└─ " if last else "├─ ")
        a = s["attributes"]
        mark = "✗" if s["status"] == "failed" else "✓"
        head = f"{prefix}{branch}{mark} {label(s)}"
        code = a.get("status_code", "")
        ms = (s["end"] - s["start"]) / 1000
        extra = ""
        if s["status"] == "failed" and s.get("error", (None,))[0]:
            extra = f"  {s['error'][0]}: {s['error'][1]}"
        print(f"  {head:<64} {s['kind']:<6} {code!s:>3} {ms:>8.3f} ms "
              f"{bar(s)}{extra}")
        kids = children.get(s["id"], [])
        inner = prefix + ("" if top else ("   " if last else "│  "))
        for i, k in enumerate(kids):
            line(k, inner, i == len(kids) - 1, False)

    for r in roots:
        if r["parent"]:
            print(f"  (the caller's span {r['parent']}, not reported here)")
            line(r, "", True, False)
        else:
            line(r, "", True, True)


def check_trace(r, spans, failures):
    """The joins that make one tree of nginx's and FastAPI's spans."""
    def fail(msg):
        failures.append(f"{r['method']} {r['path']}: {msg}")

    by_id = {s["id"]: s for s in spans}
    servers = [s for s in spans if s["source"] == "nginx" and s["kind"] == "server"]
    clients = [s for s in spans if s["source"] == "nginx" and s["kind"] == "client"]
    apps = [s for s in spans if s["source"] == "app"]

    if len(servers) != 1:
        fail(f"{len(servers)} nginx server spans, expected 1")
        return
    server = servers[0]
    if len(clients) != r["clients"]:
        fail(f"{len(clients)} nginx client spans, expected {r['clients']}")
    if len(apps) != r["app"]:
        fail(f"{len(apps)} FastAPI spans, expected {r['app']}")

    if r.get("client_parent"):
        if server["list"] != "agents" or server["parent"] != r["client_parent"]:
            fail("the nginx span is not an agent under the client's span")
    elif server["list"] != "traces" or server["parent"] is not None:
        fail("the nginx span does not start the trace (a traces[] item)")

    for c in clients:
        if c["parent"] != server["id"]:
            fail(f"client span {c['id']} is not a child of the server span")
    attempts = sorted(c["attributes"].get("attempt", 0) for c in clients)
    if attempts and attempts != list(range(1, len(attempts) + 1)) \
            and not r["path"].startswith("/private/"):
        fail(f"attempt numbers {attempts}")

    for a in apps:
        parent = by_id.get(a["parent"])
        if a["list"] != "agents" or parent is None \
                or parent["source"] != "nginx" or parent["kind"] != "client":
            fail(f"FastAPI span {a['id']} has no nginx client span as parent")
            continue
        got = a["attributes"].get("traceparent_received", "")
        m = re.fullmatch(r"00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}", got)
        if not m or as_uuid(m.group(1)) != a["item"]["trace_id"] \
                or m.group(2) != parent["id"]:
            fail(f"FastAPI received traceparent {got!r}, "
                 f"not its parent attempt {parent['id']}")
        if parent["attributes"].get("status_code") != a["attributes"]["status_code"]:
            fail(f"attempt {parent['id']} saw status "
                 f"{parent['attributes'].get('status_code')}, "
                 f"FastAPI answered {a['attributes']['status_code']}")

    if r.get("first_error"):
        first = [c for c in clients if c["attributes"].get("attempt") == 1]
        last = [c for c in clients if c["attributes"].get("attempt") == 2]
        if not first or first[0]["status"] != "failed" \
                or first[0]["error"][0] != r["first_error"]:
            fail(f"attempt 1 did not fail with {r['first_error']}")
        if not last or not any(a["parent"] == last[0]["id"] for a in apps):
            fail("the FastAPI span is not under attempt 2")


def stop_nginx(tmp, conf):
    pid_file = os.path.join(tmp, "nginx.pid")
    try:
        with open(pid_file) as f:
            pid = int(f.read())
    except (OSError, ValueError):
        return
    subprocess.run([NGINX, "-p", tmp + "/", "-c", conf, "-s", "quit"],
                   stderr=subprocess.DEVNULL)
    for sig in (None, signal.SIGTERM, signal.SIGKILL):
        if sig is not None:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)


def stop_process_group(proc):
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        proc.wait()


def main():
    if not os.path.exists(MODULE):
        sys.exit(f"{MODULE} is missing: run make")

    tmp = tempfile.mkdtemp(prefix="vaquero-demo-")
    os.chmod(tmp, 0o755)
    conf = os.path.join(tmp, "nginx.conf")
    closed_sock, closed = closed_port()
    ports = {"collector": free_port(), "backend": free_port(), "http": free_port(),
             "broken": free_port(), "closed": closed}
    backend = None
    failures = []

    collector = http.server.ThreadingHTTPServer(("127.0.0.1", ports["collector"]),
                                                Collector)
    threading.Thread(target=collector.serve_forever, daemon=True).start()

    try:
        print(f"collector  http://127.0.0.1:{ports['collector']}/api/v1/traces/batch")
        env = dict(os.environ,
                   VAQUERO_ENDPOINT=f"http://127.0.0.1:{ports['collector']}",
                   VAQUERO_AGENT_NAME=APP_AGENT,
                   VAQUERO_SERVICE_NAME="demo-fastapi",
                   VAQUERO_FLUSH_MS="100")
        with open(os.path.join(tmp, "backend.log"), "w") as log:
            backend = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "app:app", "--app-dir",
                 os.path.join(ROOT, "t", "app"), "--host", "127.0.0.1",
                 "--port", str(ports["backend"]), "--log-level", "warning"],
                env=env, stdout=log, stderr=log, start_new_session=True)
        wait_port(ports["backend"], backend)
        print(f"FastAPI    http://127.0.0.1:{ports['backend']} "
              f"(uvicorn, t/app/app.py, reporting as agent {APP_AGENT})")

        with open(conf, "w") as f:
            f.write(NGINX_CONF.format(module=MODULE, dir=tmp, **ports))
        subprocess.run([NGINX, "-p", tmp + "/", "-c", conf], check=True)
        wait_port(ports["http"])
        print(f"nginx      http://127.0.0.1:{ports['http']} "
              f"(with ngx_http_vaquero_module)")
        print()

        for r in TRAFFIC:
            r.setdefault("method", "GET")
            r["got"], r["trace"] = request(ports["http"], r)
            print(f"  {r['method']:<4} {r['path']:<18} -> {r['got']}  "
                  f"{r['trace'] or '(no trace)':<32}  {r.get('what', '')}".rstrip())
            if r["got"] != r["status"]:
                failures.append(f"{r['method']} {r['path']}: status {r['got']}, "
                                f"expected {r['status']}")
            if r.get("traced", True) != bool(r["trace"]):
                failures.append(f"{r['method']} {r['path']}: X-Trace-Id "
                                f"{r['trace']!r}")
            if r.get("client_parent") and r["trace"] != CLIENT_TRACE:
                failures.append(f"{r['method']} {r['path']}: trace {r['trace']}, "
                                f"not the client's {CLIENT_TRACE}")

        traced = [r for r in TRAFFIC if r.get("traced", True) and r["trace"]]
        expected = {as_uuid(r["trace"]): 1 + r["clients"] + r["app"] for r in traced}

        def complete():
            by_trace = collect(received)
            return all(len(by_trace.get(t, [])) >= n for t, n in expected.items())

        with received_cond:
            arrived = received_cond.wait_for(complete, WAIT_SPANS_S)
            batches = list(received)
        by_trace = collect(batches)
        if not arrived:
            failures.append(f"not every span arrived within {WAIT_SPANS_S}s")

        total = sum(len(v) for v in by_trace.values())
        print()
        print(f"{total} spans in {len(by_trace)} traces arrived at the local "
              f"Vaquero endpoint, in {len(batches)} batches.")
        print("Each trace: nginx's server span, a client span per upstream attempt, "
              "and under the attempt that reached it, the FastAPI app's span.")
        print()

        for r in traced:
            spans = by_trace.get(as_uuid(r["trace"]), [])
            print(f"trace {as_uuid(r['trace'])}   {r['method']} {r['path']} -> "
                  f"{r['got']}   {r.get('what', '')}".rstrip())
            if spans:
                show_trace(spans)
            else:
                print("  (no spans)")
            print()
            check_trace(r, spans, failures)

        extra = total - sum(expected.values())
        if extra > 0:
            failures.append(f"{extra} spans more than the traffic explains")

        for source, ua in (("nginx", "ngx_vaquero_module"),
                           ("FastAPI", "vaquero-fastapi-test-app")):
            h = next((h for h, _ in batches if ua in h.get("User-Agent", "")), None)
            if h is None:
                failures.append(f"no batch from {source}")
                continue
            shown = ", ".join(f"{k}: {h[k]}" for k in
                              ("User-Agent", "Authorization", "X-Project-ID")
                              if k in h)
            print(f"{source} batches carry {shown}")
        deps = sum(len(b.get("dependencies", [])) for _, b in batches)
        print(f"{deps} dependencies[] items (a child agent whose parent "
              f"agent is in the same batch)")

        first = by_trace.get(as_uuid(TRAFFIC[0]["trace"]), [])
        attempt = next((s for s in first if s["kind"] == "client"), None)
        app_span = next((s for s in first if s["source"] == "app"), None)
        if attempt and app_span:
            print()
            print("the join as it was sent: nginx's upstream attempt ...")
            print(json.dumps(attempt["item"], indent=2))
            print("... and the FastAPI span under it:")
            print(json.dumps(app_span["item"], indent=2))

    except Exception as e:
        failures.append(f"{type(e).__name__}: {e}")

    finally:
        stop_nginx(tmp, conf)
        if backend is not None:
            stop_process_group(backend)
        collector.shutdown()
        collector.server_close()
        closed_sock.close()

        if failures:
            for name in ("error.log", "backend.log"):
                path = os.path.join(tmp, name)
                if os.path.exists(path):
                    with open(path, errors="replace") as f:
                        tail = [l for l in f if "[notice]" not in l][-20:]
                    if tail:
                        print(f"\n--- last lines of {name} ---")
                        print("".join(tail), end="")
        shutil.rmtree(tmp, ignore_errors=True)
        print("\nstopped nginx, the FastAPI app and the collector")

    if failures:
        print("\nFAILED:")
        for f in failures:
            print(f"  - {f}")
        sys.exit(1)
    print("\nall checks passed: every FastAPI span hangs under the nginx "
          "upstream attempt that reached it")


if __name__ == "__main__":
    main()
