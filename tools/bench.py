#!/usr/bin/python3
"""make bench: what tracing costs nginx, measured A/B with wrk.

Two nginx instances (one worker each), the same configuration except
"vaquero off" (A) or "vaquero on" (B), both loading the module; runs
alternate A, B, A, B... so that drift hits both.  Two scenarios:
"return 200" and a kept-alive proxy to a third nginx.  Spans go to a
loopback sink (a fourth nginx answering 200), batch 1000 (BENCH_BATCH).

Reported per scenario: median requests/s of A and B and their ratio, and
the worker's CPU time per request (utime+stime from /proc, in clock ticks,
so a few percent coarse) for its main thread (A and B) and its exporter
thread (B): the CPU that tracing adds to each request.
"""

import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODULE = os.path.join(ROOT, "build", "ngx_http_vaquero_module.so")
NGINX = "/usr/sbin/nginx"
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "5"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "32"))
BATCH = int(os.environ.get("BENCH_BATCH", "1000"))
TICK = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def temp_paths(d):
    return "".join(f"{k}_temp_path {d}/{k};\n"
                   for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))


def start(d, http, extra_main=""):
    os.makedirs(d, exist_ok=True)
    with open(f"{d}/nginx.conf", "w") as f:
        f.write(f"""{extra_main}
pid {d}/nginx.pid;
error_log {d}/error.log;
worker_processes 1;
events {{ worker_connections 4096; }}
http {{
    {temp_paths(d)}
    access_log off;
    keepalive_requests 100000000;
    {http}
}}
""")
    subprocess.run([NGINX, "-p", d + "/", "-c", f"{d}/nginx.conf"], check=True)
    for _ in range(100):
        if os.path.exists(f"{d}/nginx.pid"):
            break
        time.sleep(0.05)
    master = int(open(f"{d}/nginx.pid").read())
    for _ in range(100):
        kids = subprocess.run(["pgrep", "-P", str(master)], capture_output=True,
                              text=True).stdout.split()
        if kids:
            return int(kids[0])
        time.sleep(0.05)
    raise RuntimeError("no worker")


def stop(d):
    subprocess.run([NGINX, "-p", d + "/", "-c", f"{d}/nginx.conf", "-s", "stop"],
                   stderr=subprocess.DEVNULL)


def cpu_seconds(path):
    fields = open(path).read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def worker_cpu(pid):
    """(main thread, other threads: the exporter) CPU seconds so far"""
    main = other = 0.0
    for tid in os.listdir(f"/proc/{pid}/task"):
        t = cpu_seconds(f"/proc/{pid}/task/{tid}/stat")
        if int(tid) == pid:
            main += t
        else:
            other += t
    return main, other


def wrk(port, path):
    out = subprocess.run(["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{SECONDS}s",
                          f"http://127.0.0.1:{port}{path}"],
                         capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        if line.startswith("Requests/sec:"):
            rps = float(line.split()[1])
        if "requests in" in line:
            total = int(line.split()[0])
    return rps, total


def main():
    if not os.path.exists(MODULE):
        sys.exit(f"{MODULE} is missing: run make")
    if not shutil.which("wrk"):
        sys.exit("wrk is missing: apt-get install wrk")

    tmp = tempfile.mkdtemp(prefix="vaquero-bench-")
    os.chmod(tmp, 0o755)
    sink, upstream = free_port(), free_port()
    ports = {"A": (free_port(), free_port()), "B": (free_port(), free_port())}
    started = []

    try:
        start(f"{tmp}/sink", f"client_max_body_size 100m;\n"
              f"server {{ listen 127.0.0.1:{sink}; location / {{ return 200 '{{}}'; }} }}")
        started.append(f"{tmp}/sink")
        start(f"{tmp}/upstream",
              f"server {{ listen 127.0.0.1:{upstream}; location / {{ return 200 'ok'; }} }}")
        started.append(f"{tmp}/upstream")

        workers = {}
        for name, (p200, pproxy) in ports.items():
            onoff = "on" if name == "B" else "off"
            workers[name] = start(f"{tmp}/{name}", f"""
    vaquero_endpoint http://127.0.0.1:{sink};
    vaquero_batch_size {BATCH};
    vaquero_flush_interval 1s;
    vaquero_queue_size 64m;
    upstream backend {{ server 127.0.0.1:{upstream}; keepalive 64; }}
    vaquero {onoff};
    server {{
        listen 127.0.0.1:{p200};
        location / {{ return 200 "ok"; }}
    }}
    server {{
        listen 127.0.0.1:{pproxy};
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
""", extra_main=f"load_module {MODULE};")
            started.append(f"{tmp}/{name}")

        print(f"{ROUNDS} rounds x {SECONDS}s per variant, wrk -t1 -c{CONNECTIONS}, "
              f"1 worker, A = vaquero off, B = vaquero on (100% of requests), "
              f"batch {BATCH}")
        for scenario, idx in (("return 200", 0), ("proxy keepalive", 1)):
            rps = {"A": [], "B": []}
            cpu = {"A": [], "B": []}
            exporter = []
            for _ in range(ROUNDS):
                for name in ("A", "B"):
                    port = ports[name][idx]
                    m0, e0 = worker_cpu(workers[name])
                    r, total = wrk(port, "/")
                    time.sleep(1.2)     # the exporter's last partial batch
                    m1, e1 = worker_cpu(workers[name])
                    rps[name].append(r)
                    cpu[name].append((m1 - m0) / total * 1e6)
                    if name == "B":
                        exporter.append((e1 - e0) / total * 1e6)
            a, b = statistics.median(rps["A"]), statistics.median(rps["B"])
            ca, cb = statistics.median(cpu["A"]), statistics.median(cpu["B"])
            ce = statistics.median(exporter)
            print(f"{scenario:<16} A {a:9.0f} req/s  B {b:9.0f} req/s  "
                  f"B/A {b / a:.3f} ({(1 - b / a) * 100:+.1f}% cost)\n"
                  f"{'':<16} worker CPU per request: main thread A {ca:.2f} us, "
                  f"B {cb:.2f} us ({cb - ca:+.2f}); exporter thread {ce:.2f} us; "
                  f"added in all {cb - ca + ce:+.2f} us")
    finally:
        for d in started:
            stop(d)
        time.sleep(0.5)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
