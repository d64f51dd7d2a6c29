#!/usr/bin/python3
"""make soak: a few minutes of steady traffic, reloads and a flapping collector.

nginx with 2 workers traces every request (half of them proxied to a
backend), while:
  - wrk sends steady traffic for the whole run;
  - nginx is reloaded SOAK_RELOADS times (default 30), evenly spread;
  - the collector flaps: it answers 200, then 503, then refuses
    connections, then 200 again, in turns of a few seconds.

Afterwards (traffic stopped, collector up, queue drained) it checks:
  - counters balance: spans_recorded == spans_exported + spans_dropped_*
    (vaquero_status), exactly;
  - every span the collector acknowledged (2xx) is counted once in
    spans_exported, and no span id was acknowledged twice;
  - nothing leaked: after one more reload with no traffic, the new
    workers have one exporter thread each and as many file descriptors
    and about as much memory as the first, idle, workers had; the master's
    file descriptors did not grow; and under load, the last generation of
    workers used no more memory than the second at the same age.

Prints the figures and exits non-zero if a check fails.
"""

import http.server
import json
import os
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODULE = os.path.join(ROOT, "build", "ngx_http_vaquero_module.so")
NGINX = "/usr/sbin/nginx"
SECONDS = int(os.environ.get("SOAK_SECONDS", "150"))
RELOADS = int(os.environ.get("SOAK_RELOADS", "30"))
FLAP = float(os.environ.get("SOAK_FLAP_SECONDS", "4"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Collector:
    """Counts acknowledged spans by id; answers as the current mode says."""

    def __init__(self, port):
        self.port = port
        self.mode = "200"
        self.lock = threading.Lock()
        self.acked = {}            # span id -> times acknowledged
        self.requests = {"200": 0, "503": 0, "close": 0}
        self.server = None
        self.thread = None

    def handler(self):
        collector = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                mode = collector.mode
                if mode == "close":
                    # "refused" for connections already open: no answer
                    self.close_connection = True
                    return
                with collector.lock:
                    collector.requests[mode] = collector.requests.get(mode, 0) + 1
                    if mode == "200":
                        doc = json.loads(body)
                        for t in doc["traces"]:
                            sid = t["raw_data"]["metadata"]["span_id"]
                            collector.acked[sid] = collector.acked.get(sid, 0) + 1
                        for a in doc["agents"]:
                            sid = a["agent_id"]
                            collector.acked[sid] = collector.acked.get(sid, 0) + 1
                reply = b"{}"
                self.send_response(int(mode))
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args):
                pass

        return Handler

    def up(self):
        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.server = Server(("127.0.0.1", self.port), self.handler())
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       daemon=True)
        self.thread.start()

    def down(self):
        """Refuses connections: the listening socket is closed."""
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


CONF = """
load_module {module};
pid {dir}/nginx.pid;
error_log {dir}/error.log notice;
worker_processes 2;
events {{ worker_connections 4096; }}
http {{
    client_body_temp_path {dir}/client_body_temp;
    proxy_temp_path {dir}/proxy_temp;
    fastcgi_temp_path {dir}/fastcgi_temp;
    uwsgi_temp_path {dir}/uwsgi_temp;
    scgi_temp_path {dir}/scgi_temp;
    access_log off;

    vaquero_endpoint http://127.0.0.1:{collector};
    vaquero_flush_interval 200ms;
    vaquero_export_timeout 2s;
    vaquero_shutdown_timeout 2s;
    vaquero_attribute generation "{generation}";

    upstream backend {{
        server 127.0.0.1:{backend};
        keepalive 32;
    }}

    server {{
        listen 127.0.0.1:{backend};
        location / {{ return 200 "backend\\n"; }}
    }}

    server {{
        listen 127.0.0.1:{http};
        vaquero on;

        location / {{
            return 200 "ok\\n";
        }}

        location /proxied {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}

        location = /status {{
            vaquero off;
            vaquero_status;
        }}
    }}
}}
"""

LUA = """
counter = 0
-- steady, not flat out: a few thousand requests a second
delay = function()
    return 5
end
request = function()
    counter = counter + 1
    if counter % 2 == 0 then
        return wrk.format("GET", "/proxied/" .. counter)
    end
    return wrk.format("GET", "/" .. counter)
end
"""


def workers(master):
    out = subprocess.run(["pgrep", "-P", str(master)], capture_output=True,
                         text=True).stdout.split()
    pids = []
    for pid in out:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if f.read().startswith(b"nginx: worker process"):
                    pids.append(int(pid))
        except OSError:
            pass
    return pids


def proc_figures(pid):
    """(threads, fds, rss kB) of a process, or None if it is gone"""
    try:
        threads = len(os.listdir(f"/proc/{pid}/task"))
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        with open(f"/proc/{pid}/status") as f:
            rss = next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
        return threads, fds, rss
    except (OSError, StopIteration):
        return None


def status(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=5) as r:
        return json.loads(r.read())


def main():
    if not os.path.exists(MODULE):
        sys.exit(f"{MODULE} is missing: run make")
    if not shutil.which("wrk"):
        sys.exit("wrk is missing: apt-get install wrk")

    tmp = tempfile.mkdtemp(prefix="vaquero-soak-")
    os.chmod(tmp, 0o755)
    ports = {"collector": free_port(), "backend": free_port(), "http": free_port()}
    collector = Collector(ports["collector"])
    collector.up()
    conf_path = os.path.join(tmp, "nginx.conf")
    failures = []

    def write_conf(generation):
        with open(conf_path, "w") as f:
            f.write(CONF.format(module=MODULE, dir=tmp, generation=generation,
                                **ports))

    def nginx(*args):
        subprocess.run([NGINX, "-p", tmp + "/", "-c", conf_path, *args],
                       check=True)

    write_conf(0)
    nginx()
    master = None
    for _ in range(100):
        try:
            master = int(open(os.path.join(tmp, "nginx.pid")).read())
            if len(workers(master)) == 2:
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.05)

    lua = os.path.join(tmp, "mix.lua")
    with open(lua, "w") as f:
        f.write(LUA)

    wrk = None
    try:
        # the first workers, idle, 3 s old: the reference
        time.sleep(3)
        first = {pid: proc_figures(pid) for pid in workers(master)}
        master_fds_first = proc_figures(master)[1]

        wrk = subprocess.Popen(["wrk", "-t1", "-c16", f"-d{SECONDS}s", "-s", lua,
                                f"http://127.0.0.1:{ports['http']}/"],
                               stdout=subprocess.PIPE, text=True)

        start = time.time()
        reload_every = SECONDS / (RELOADS + 1)
        next_reload = start + reload_every
        next_flap = start + FLAP
        modes = ["503", "down", "200", "200"]
        flap = 0
        reloads = 0
        last_generation = {}

        while wrk.poll() is None:
            now = time.time()
            if now >= next_flap:
                mode = modes[flap % len(modes)]
                flap += 1
                if mode == "down":
                    collector.mode = "close"
                    collector.down()
                else:
                    if collector.server is None:
                        collector.up()
                    collector.mode = mode
                next_flap = now + FLAP
            if reloads < RELOADS and now >= next_reload:
                reloads += 1
                write_conf(reloads)
                nginx("-s", "reload")
                next_reload = now + reload_every
            # each generation's workers at the same age as the first
            for pid in workers(master):
                if pid not in first and pid not in last_generation:
                    last_generation[pid] = (now, None)
                age_at, figs = last_generation.get(pid, (None, None))
                if age_at and figs is None and now - age_at >= 3:
                    last_generation[pid] = (age_at, proc_figures(pid))
            time.sleep(0.1)

        out = wrk.stdout.read()
        sent = next(int(l.split()[0]) for l in out.splitlines() if "requests in" in l)

        # collector up, traffic over: wait until the queue drains and the
        # counters settle
        if collector.server is None:
            collector.up()
        collector.mode = "200"
        deadline = time.time() + 60
        while time.time() < deadline:
            s = status(ports["http"])
            dropped = (s["spans_dropped_queue_full"] + s["spans_dropped_too_large"]
                       + s["spans_dropped_export_failed"]
                       + s["spans_dropped_writer_lost"])
            if s["queue_used"] == 0 and s["spans_recorded"] == s["spans_exported"] + dropped:
                break
            time.sleep(0.2)

        s = status(ports["http"])
        dropped = (s["spans_dropped_queue_full"] + s["spans_dropped_too_large"]
                   + s["spans_dropped_export_failed"] + s["spans_dropped_writer_lost"])
        with collector.lock:
            acked = sum(collector.acked.values())
            unique = len(collector.acked)
            twice = sum(1 for n in collector.acked.values() if n > 1)

        # one more reload, no traffic: idle workers again, 3 s old
        old = set(workers(master))
        write_conf(reloads + 1)
        nginx("-s", "reload")
        for _ in range(200):
            now_workers = workers(master)
            if len(now_workers) == 2 and not old & set(now_workers):
                break
            time.sleep(0.05)
        time.sleep(3)
        now_figs = {pid: proc_figures(pid) for pid in now_workers}
        master_fds = proc_figures(master)[1]
        late = [f for _, f in sorted(last_generation.values(),
                                     key=lambda x: x[0]) if f]

        print(f"soak: {SECONDS} s, {reloads} reloads, collector flapping every {FLAP:g} s "
              f"(200 / 503 / refused)")
        print(f"  requests sent (wrk)         {sent}")
        for k in ("spans_recorded", "spans_exported", "spans_dropped_queue_full",
                  "spans_dropped_too_large", "spans_dropped_export_failed",
                  "spans_dropped_writer_lost", "export_requests",
                  "export_failures", "export_retries"):
            print(f"  {k:<28}{s[k]}")
        print(f"  acknowledged by collector   {acked} ({unique} distinct span ids, "
              f"{twice} acknowledged twice)")
        print(f"  collector answers           {collector.requests}")
        def figs(fs):
            return ", ".join(f"{t} threads {fd} fds {rss} kB" for t, fd, rss in fs)

        print(f"  first workers, idle         {figs(first.values())}")
        if len(late) >= 4:
            print(f"  under load, 2nd generation  {figs(late[:2])}")
            print(f"  under load, last generation {figs(late[-2:])}")
        print(f"  after it all, idle          {figs(filter(None, now_figs.values()))}")
        print(f"  master fds first / now      {master_fds_first} / {master_fds}")

        if s["spans_recorded"] != s["spans_exported"] + dropped:
            failures.append("counters do not balance")
        if s["spans_exported"] != acked:
            failures.append(f"exported {s['spans_exported']} != acknowledged {acked}")
        if twice:
            failures.append(f"{twice} spans acknowledged twice")
        if any(f and f[0] != 2 for f in now_figs.values()):
            failures.append("a worker does not have exactly one exporter thread")
        ref_fds = max(f[1] for f in first.values())
        if any(f and f[1] > ref_fds for f in now_figs.values()):
            failures.append("worker file descriptors grew")
        if master_fds > master_fds_first:
            failures.append("master file descriptors grew")
        ref_rss = max(f[2] for f in first.values())
        if any(f and f[2] > ref_rss * 1.2 + 2048 for f in now_figs.values()):
            failures.append("idle worker memory grew")
        if len(late) >= 4 and max(f[2] for f in late[-2:]) > max(f[2] for f in late[:2]) * 1.2 + 2048:
            failures.append("worker memory grew between generations under load")
        if reloads < RELOADS:
            failures.append(f"only {reloads} reloads")

    finally:
        if wrk and wrk.poll() is None:
            wrk.kill()
        try:
            nginx("-s", "quit")
            for _ in range(200):
                if not os.path.exists(os.path.join(tmp, "nginx.pid")):
                    break
                time.sleep(0.05)
        except subprocess.CalledProcessError:
            pass
        collector.down()
        shutil.rmtree(tmp, ignore_errors=True)

    if failures:
        print("FAILED: " + "; ".join(failures))
        sys.exit(1)
    print("soak: all checks passed")


if __name__ == "__main__":
    main()
