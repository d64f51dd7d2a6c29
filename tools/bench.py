#!/usr/bin/python3
"""make bench: what tracing costs nginx, measured with wrk, A/B, interleaved.

Scenarios (BENCH_SCENARIOS, comma-separated; default all):
  return200   (a) nginx answers "return 200" itself
  proxy       (b) nginx proxies to a backend nginx over kept-alive
              connections (upstream keepalive above wrk's connections)

Variants (BENCH_VARIANTS, comma-separated; default all; the baseline
"nomod" is always run, every ratio is to it):
  nomod       no module loaded                                 (baseline)
  off         module loaded, exporter configured, "vaquero off"
  rate0       "vaquero on", vaquero_sample_rate 0
  rate0.1     "vaquero on", vaquero_sample_rate 0.1, Vaquero batches
  rate1       "vaquero on", vaquero_sample_rate 1, Vaquero batches
  otlp        rate 1, "vaquero_protocol otlp" (OTLP/HTTP protobuf)
  otlp_json   rate 1, "vaquero_protocol otlp_json" (OTLP/HTTP JSON)
  accesslog   no module, a 12-field JSON access_log with buffer=64k
              (what people run instead of tracing)
The OTLP variants run when "nginx -t" accepts vaquero_protocol, and are
reported as not available otherwise.

How (each number, and why it can be trusted):
  - Every round runs every (scenario, variant) once, the variants in an
    order rotated by one each round, so that drift and position in the
    round hit them all alike.  nginx is started afresh for each run.
  - One nginx worker, pinned to one CPU (worker_cpu_affinity, checked on
    every thread of the worker in /proc, taskset -a if it did not take);
    wrk, the backend, the sink and this script run on the other CPUs.
  - req/s: wrk's.  ratio: the median over rounds of variant / baseline
    req/s within the same round.  p99: wrk --latency's 99th percentile
    (median over rounds).  worker busy: the share of its CPU the worker
    used while wrk ran; well below 100%, something else (wrk, on the other
    CPU) limited req/s, the ratio understates the cost, and us/request is
    the number to read: "CPU cost" is 1 - baseline / variant us/request
    (median over rounds), the throughput a CPU-bound worker would lose.
  - worker us/request: CPU time of all the worker's threads (main and
    exporter: /proc/PID/task/*/schedstat, nanoseconds; clock ticks of
    /proc/PID/task/*/stat where schedstat is missing) from just before
    wrk starts until every span recorded has reached the sink, divided by
    the requests nginx served (stub_status's counter, not wrk's, which
    misses requests cut off at the end).  "+us" is the median of the
    per-round difference to the baseline; "exporter" the exporter
    thread's share.
  - spans: "sent" is the module's own count of spans handed to the queue
    (vaquero_status spans_recorded: refused ones included); "received" is
    what the sink counted by parsing every body (bench_sink: items of
    traces[] and agents[] in a Vaquero batch, Span messages in OTLP
    protobuf, span objects in OTLP JSON; bench_sink_check proves the
    counts exact on the SDK's own encoders' output, and runs first);
    lost = sent - received, with the module's drop counters beside it.
    The sink is a small C program rather than an nginx plus the module's
    own counters, because a count by the module would not check the
    module; it puts bodies aside while wrk runs and parses them after,
    so that it takes little of the CPU wrk runs on (the report gives its
    CPU per span while wrk ran).
  - anon KB: growth of the worker's private memory (RssAnon) from a
    quarter into the run to its end (largest over rounds): the heap
    should stay flat while serving.

Tunables (environment): BENCH_ROUNDS (5), BENCH_SECONDS (5),
BENCH_CONNECTIONS (32), BENCH_SCENARIOS, BENCH_VARIANTS, BENCH_BATCH
(vaquero_batch_size; default: the module's), BENCH_QUEUE
(vaquero_queue_size; default: the module's), BENCH_FLUSH
(vaquero_flush_interval, 1s), BENCH_CPU (the worker's CPU; default the
last one), BENCH_MODULE (the .so; default build/), BENCH_MODULE_B
(another build of the module: each variant that loads the module runs
with it too, as "... [B]", in the same rounds, for an A/B of two builds
that the VM's drift between runs does not blur), BENCH_SINK_MB (memory
the sink keeps bodies in until wrk is done, 2048), BENCH_JSON (a file for
every run's raw numbers).  Progress goes to stderr, the report (Markdown
tables, ready for the README) to stdout.
"""

import datetime
import http.client
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, "build")
MODULE = os.environ.get("BENCH_MODULE",
                        os.path.join(BUILD, "ngx_http_vaquero_module.so"))
MODULE_B = os.environ.get("BENCH_MODULE_B", "")
NGINX = "/usr/sbin/nginx"
CC = os.environ.get("CC", "cc")

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "5"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "32"))
BATCH = os.environ.get("BENCH_BATCH", "")
QUEUE = os.environ.get("BENCH_QUEUE", "")
FLUSH = os.environ.get("BENCH_FLUSH", "1s")
JSON_OUT = os.environ.get("BENCH_JSON", "")
# A run must fit: when the arena is full the sink counts what it holds
# there and then, on wrk's CPU, and answers nobody meanwhile; at 110k
# spans/s of OTLP JSON (1.2 KB each) 512 MB lasted 4 s of a 5 s run, and
# the exporters' queues overflowed while it counted (92,434 spans "lost").
SINK_MB = os.environ.get("BENCH_SINK_MB", "2048")
KEEPALIVE = max(2 * CONNECTIONS, CONNECTIONS + 16)
TICK = os.sysconf("SC_CLK_TCK")
EXPORT_TIMEOUT = 5      # the module's default vaquero_export_timeout, s

SCENARIOS = {
    "return200": {"title": "(a) return 200", "spans": 1},
    "proxy": {"title": "(b) proxy to a keepalive upstream", "spans": 2},
}
SCENARIO_ALIASES = {"a": "return200", "b": "proxy"}

# budget: the most throughput a variant may cost, in %, per scenario
VARIANTS = {
    "nomod": {"label": "no module (baseline)", "module": False},
    "off": {"label": "module loaded, vaquero off", "module": True,
            "vaquero": "off", "budget": {"return200": 0.5, "proxy": 0.5}},
    "rate0": {"label": "vaquero on, rate 0", "module": True,
              "vaquero": "on", "rate": "0",
              "budget": {"return200": 1.0, "proxy": 1.0}},
    "rate0.1": {"label": "vaquero on, rate 0.1, Vaquero", "module": True,
                "vaquero": "on", "rate": "0.1", "exports": True,
                "budget": {"return200": 1.5, "proxy": 1.5}},
    "rate1": {"label": "vaquero on, rate 1.0, Vaquero", "module": True,
              "vaquero": "on", "rate": "1", "exports": True,
              "budget": {"return200": 10.0, "proxy": 5.0}},
    "otlp": {"label": "vaquero on, rate 1.0, OTLP protobuf", "module": True,
             "vaquero": "on", "rate": "1", "exports": True,
             "protocol": "otlp",
             "budget": {"return200": 10.0, "proxy": 5.0}},
    "otlp_json": {"label": "vaquero on, rate 1.0, OTLP JSON", "module": True,
                  "vaquero": "on", "rate": "1", "exports": True,
                  "protocol": "otlp_json",
                  "budget": {"return200": 10.0, "proxy": 5.0}},
    "accesslog": {"label": "no module, JSON access_log buffer=64k",
                  "module": False, "accesslog": True},
}

# about a dozen fields, as people log them (escape=json)
ACCESS_LOG_FORMAT = (
    "log_format bench_json escape=json '{"
    '"time":"$time_iso8601",'
    '"remote_addr":"$remote_addr",'
    '"request_id":"$request_id",'
    '"method":"$request_method",'
    '"uri":"$request_uri",'
    '"protocol":"$server_protocol",'
    '"status":$status,'
    '"body_bytes_sent":$body_bytes_sent,'
    '"request_time":$request_time,'
    '"referer":"$http_referer",'
    '"user_agent":"$http_user_agent",'
    '"upstream_addr":"$upstream_addr",'
    '"upstream_response_time":"$upstream_response_time"'
    "}';")


def seconds_of(t):
    """an nginx time ("1s", "500ms", "2") in seconds"""
    for unit, f in (("ms", 1e-3), ("s", 1), ("m", 60)):
        if t.endswith(unit):
            return float(t[:-len(unit)]) * f
    return float(t)


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def env_list(name, known, aliases=None):
    value = os.environ.get(name, "").strip()
    if not value:
        return list(known)
    out = []
    for v in value.replace(" ", ",").split(","):
        if not v:
            continue
        v = (aliases or {}).get(v, v)
        if v not in known:
            sys.exit(f"{name}: unknown {v!r}; known: {', '.join(known)}")
        if v not in out:
            out.append(v)
    return out


# --- tools: the sink and its check -------------------------------------------

def build_tool(name, sources, flags):
    """build/sdk/NAME from sources, unless it is newer than all of them"""
    out = os.path.join(BUILD, "sdk", name)
    paths = [os.path.join(ROOT, s) for s in sources]
    deps = paths + [os.path.join(ROOT, "sdk/bench/bench_sink.c")]
    if (os.path.exists(out)
            and os.path.getmtime(out) >= max(os.path.getmtime(p)
                                             for p in deps)):
        return out
    os.makedirs(os.path.dirname(out), exist_ok=True)
    cmd = [CC, "-std=gnu11", "-O2", "-Wall", "-Wextra",
           "-I" + os.path.join(ROOT, "sdk/include"), "-o", out] + paths + flags
    log("building " + os.path.relpath(out, ROOT))
    subprocess.run(cmd, check=True)
    return out


def sdk_sources():
    d = os.path.join(ROOT, "sdk/src")
    return sorted("sdk/src/" + f for f in os.listdir(d) if f.endswith(".c"))


# --- nginx ------------------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def temp_paths(d):
    return "".join(f"    {k}_temp_path {d}/{k};\n"
                   for k in ("client_body", "proxy", "fastcgi", "uwsgi",
                             "scgi"))


def nginx_conf(d, http, main="", affinity=""):
    return f"""{main}
pid {d}/nginx.pid;
error_log {d}/error.log;
worker_processes 1;
{affinity}
events {{ worker_connections 4096; }}
http {{
{temp_paths(d)}
    access_log off;
    keepalive_requests 1000000000;
{http}
}}
"""


def nginx(d, *args, check=True):
    return subprocess.run([NGINX, "-p", d + "/", "-e", f"{d}/error.log",
                           "-c", f"{d}/nginx.conf", *args],
                          capture_output=True, text=True, check=check)


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def start_nginx(d, conf):
    """starts nginx in d; returns (master pid, worker pid)"""
    os.makedirs(d, exist_ok=True)
    with open(f"{d}/nginx.conf", "w") as f:
        f.write(conf)
    if os.path.exists(f"{d}/nginx.pid"):
        os.unlink(f"{d}/nginx.pid")
    r = nginx(d, check=False)
    if r.returncode != 0:
        raise RuntimeError(f"nginx did not start: {r.stderr.strip()}")
    master = None
    for _ in range(200):
        try:
            master = int(open(f"{d}/nginx.pid").read())
            break
        except (OSError, ValueError):
            time.sleep(0.02)
    if master is None:
        raise RuntimeError("nginx wrote no pid file")
    for _ in range(200):
        kids = subprocess.run(["pgrep", "-P", str(master)],
                              capture_output=True, text=True).stdout.split()
        if kids:
            return master, int(kids[0])
        time.sleep(0.02)
    raise RuntimeError("nginx started no worker")


def stop_nginx(d, master):
    nginx(d, "-s", "stop", check=False)
    for _ in range(500):
        if not pid_alive(master):
            return
        time.sleep(0.02)
    os.kill(master, 9)


def wait_port(port, seconds=5):
    end = time.time() + seconds
    while time.time() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listens on {port}")


def http_get(port, path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        c.request("GET", path)
        r = c.getresponse()
        body = r.read().decode()
        if r.status != 200:
            raise RuntimeError(f"GET {path}: {r.status}")
        return body
    finally:
        c.close()


def stub_requests(port):
    # Active connections: 1 / server accepts handled requests / a b c / ...
    return int(http_get(port, "/stub").splitlines()[2].split()[2])


# --- the worker, from /proc -------------------------------------------------

def thread_cpu_ns(pid, tid):
    try:
        with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        with open(f"/proc/{pid}/task/{tid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) * 1e9 / TICK


def worker_cpu(pid):
    """{thread id: CPU ns so far} of every thread of the worker"""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            out[int(tid)] = thread_cpu_ns(pid, tid)
        except OSError:
            pass
    return out


def rss_anon_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    return 0


def pin_worker(pid, cpu):
    """every thread of the worker on cpu; True when it already was"""
    ok = True
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/status") as f:
            for line in f:
                if line.startswith("Cpus_allowed_list:"):
                    ok = ok and line.split()[1] == str(cpu)
    if not ok:
        subprocess.run(["taskset", "-a", "-p", "-c", str(cpu), str(pid)],
                       check=True, capture_output=True)
    return ok


# --- wrk --------------------------------------------------------------------

def to_ms(v):
    for unit, f in (("us", 1e-3), ("ms", 1.0), ("s", 1e3)):
        if v.endswith(unit):
            return float(v[:-len(unit)]) * f
    return float(v)


def parse_wrk(out):
    r = {"rps": None, "p99_ms": None, "wrk_requests": None, "errors": ""}
    lat = False
    for line in out.splitlines():
        s = line.strip()
        if s.startswith("Latency Distribution"):
            lat = True
        elif lat and s.startswith("99%"):
            r["p99_ms"] = to_ms(s.split()[1])
            lat = False
        elif "requests in" in s:
            r["wrk_requests"] = int(s.split()[0])
        elif s.startswith("Requests/sec:"):
            r["rps"] = float(s.split()[1])
        elif s.startswith("Non-2xx") or s.startswith("Socket errors"):
            r["errors"] += s + "; "
    if r["rps"] is None or r["p99_ms"] is None:
        raise RuntimeError("cannot read wrk's output:\n" + out)
    return r


# --- one run ----------------------------------------------------------------

class Bench:
    def __init__(self, tmp, worker_cpu_id, sink_port, sink_pid, backend_port):
        self.tmp = tmp
        self.sink_pid = sink_pid
        self.cpu = worker_cpu_id
        self.sink_port = sink_port
        self.backend_port = backend_port
        self.port = free_port()
        self.status_port = free_port()

    def http_block(self, d, scenario, v):
        lines = []
        if v.get("module"):
            lines.append(f"    vaquero_endpoint http://127.0.0.1:{self.sink_port};")
            lines.append(f"    vaquero_flush_interval {FLUSH};")
            if BATCH:
                lines.append(f"    vaquero_batch_size {BATCH};")
            if QUEUE:
                lines.append(f"    vaquero_queue_size {QUEUE};")
            if v.get("protocol"):
                lines.append(f"    vaquero_protocol {v['protocol']};")
        if v.get("accesslog"):
            lines.append("    " + ACCESS_LOG_FORMAT)

        loc = []
        if v.get("vaquero"):
            loc.append(f"vaquero {v['vaquero']};")
        if v.get("rate") is not None:
            loc.append(f"vaquero_sample_rate {v['rate']};")
        if scenario == "proxy":
            loc += ["proxy_pass http://backend;", "proxy_http_version 1.1;",
                    'proxy_set_header Connection "";']
        else:
            loc.append('return 200 "ok";')
        loc = "\n            ".join(loc)
        alog = (f"access_log {d}/access.json bench_json buffer=64k;"
                if v.get("accesslog") else "")
        status = ("location = /vaquero { vaquero_status; }"
                  if v.get("module") else "")

        lines.append(f"""
    upstream backend {{
        server 127.0.0.1:{self.backend_port};
        keepalive {KEEPALIVE};
        keepalive_requests 1000000000;
    }}
    server {{
        listen 127.0.0.1:{self.port};
        {alog}
        location / {{
            {loc}
        }}
    }}
    server {{
        listen 127.0.0.1:{self.status_port};
        location = /stub {{ stub_status; }}
        {status}
    }}""")
        return "\n".join(lines)

    def conf(self, d, scenario, v):
        main = (f"load_module {v.get('module_path', MODULE)};"
                if v.get("module") else "")
        mask = "1" + "0" * self.cpu
        return nginx_conf(d, self.http_block(d, scenario, v), main=main,
                          affinity=f"worker_cpu_affinity {mask};")

    def sink_stats(self):
        return json.loads(http_get(self.sink_port, "/stats"))

    def vaquero_status(self):
        return json.loads(http_get(self.status_port, "/vaquero"))

    def run(self, scenario, name, seconds=None):
        v = VARIANTS[name]
        seconds = seconds or SECONDS
        d = f"{self.tmp}/traced"
        shutil.rmtree(d, ignore_errors=True)
        master, worker = start_nginx(d, self.conf(d, scenario, v))
        try:
            wait_port(self.status_port)
            wait_port(self.port)
            pinned = pin_worker(worker, self.cpu)

            st0 = self.vaquero_status() if v.get("module") else None
            sink0 = self.sink_stats()
            stub0 = stub_requests(self.status_port)
            cpu0 = worker_cpu(worker)
            sink_cpu0 = sum(worker_cpu(self.sink_pid).values())
            t0 = time.monotonic()

            wrk = subprocess.Popen(
                ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s",
                 "--latency", f"http://127.0.0.1:{self.port}/"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            time.sleep(seconds / 4)
            anon0 = rss_anon_kb(worker)
            out, err = wrk.communicate()
            wall = time.monotonic() - t0
            cpu_wrk = worker_cpu(worker)
            sink_cpu1 = sum(worker_cpu(self.sink_pid).values())
            if wrk.returncode != 0:
                raise RuntimeError(f"wrk failed: {err.strip()}")
            anon1 = rss_anon_kb(worker)
            r = parse_wrk(out)

            time.sleep(0.2)     # requests cut off by wrk's end finish
            requests = stub_requests(self.status_port) - stub0 - 1

            r.update(requests=requests, pinned=pinned,
                     anon_growth_kb=anon1 - anon0)

            if v.get("module") and v.get("vaquero") == "on":
                st = self.vaquero_status()
                sent = st["spans_recorded"] - st0["spans_recorded"]
                queue_drops = sum(st[k] - st0[k] for k in (
                    "spans_dropped_queue_full", "spans_dropped_too_large"))
                drained = True
                if v.get("exports"):
                    # until each span recorded is at the sink, or dropped
                    deadline = (time.time() + EXPORT_TIMEOUT + 3
                                + seconds_of(FLUSH))
                    while True:
                        got = self.sink_stats()["spans"] - sink0["spans"]
                        if got + queue_drops >= sent:
                            break
                        if time.time() > deadline:
                            drained = False
                            break
                        time.sleep(0.02)

            cpu1 = worker_cpu(worker)
            sink1 = self.sink_stats()

            total = sum(cpu1.values()) - sum(cpu0.get(t, 0) for t in cpu1)
            exporter = sum(c - cpu0.get(t, 0) for t, c in cpu1.items()
                           if t != worker)
            r["us_per_request"] = total / 1e3 / max(requests, 1)
            r["exporter_us_per_request"] = exporter / 1e3 / max(requests, 1)
            r["threads"] = len(cpu1)
            # how busy the worker's CPU was while wrk ran: below ~95%, the
            # worker was not what limited req/s (the other CPU was)
            r["busy_pct"] = (sum(cpu_wrk.values())
                             - sum(cpu0.get(t, 0) for t in cpu_wrk)) \
                / 1e7 / wall

            if v.get("module") and v.get("vaquero") == "on":
                st1 = self.vaquero_status()

                def delta(k):
                    return st1[k] - st0[k]

                r.update(
                    drained=drained,
                    spans_sent=delta("spans_recorded"),
                    spans_sampled_out=delta("spans_sampled_out"),
                    spans_exported=delta("spans_exported"),
                    spans_received=sink1["spans"] - sink0["spans"],
                    dropped_queue_full=delta("spans_dropped_queue_full"),
                    dropped_too_large=delta("spans_dropped_too_large"),
                    dropped_export_failed=delta("spans_dropped_export_failed"),
                    dropped_writer_lost=delta("spans_dropped_writer_lost"),
                    export_requests=delta("export_requests"),
                    export_failures=delta("export_failures"),
                    sink_bad_bodies=sink1["bad"] - sink0["bad"],
                    sink_cpu_ms=(sink_cpu1 - sink_cpu0) / 1e6,
                    sink_bytes=sink1["bytes"] - sink0["bytes"])
            elif sink1["spans"] != sink0["spans"]:
                r["spans_received"] = sink1["spans"] - sink0["spans"]
            return r
        finally:
            stop_nginx(d, master)


def protocol_available(tmp, protocol):
    """None when nginx -t takes vaquero_protocol protocol, else why not"""
    d = f"{tmp}/probe-{protocol}"
    os.makedirs(d, exist_ok=True)
    with open(f"{d}/nginx.conf", "w") as f:
        f.write(nginx_conf(d, f"""
    vaquero_endpoint http://127.0.0.1:9;
    vaquero_protocol {protocol};
    server {{ listen 127.0.0.1:9; location / {{ vaquero on; return 200; }} }}
""", main=f"load_module {MODULE};"))
    r = nginx(d, "-t", "-q", check=False)
    if r.returncode == 0:
        return None
    why = [l for l in r.stderr.splitlines() if "emerg" in l]
    why = (why[0] if why else r.stderr.strip()).split("] ", 1)[-1]
    return why.split(f" in {d}/")[0]


# --- the report -------------------------------------------------------------

def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, spec, none="—"):
    return none if x is None else format(x, spec)


def machine():
    model = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    distro = ""
    try:
        for line in open("/etc/os-release"):
            if line.startswith("PRETTY_NAME="):
                distro = line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    ver = subprocess.run([NGINX, "-v"], capture_output=True,
                         text=True).stderr.strip().split("/")[-1]
    rev = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"],
                         capture_output=True, text=True).stdout.strip()
    return (f"{model}, {os.cpu_count()} CPUs, Linux {platform.release()}, "
            f"{distro}; nginx {ver}; module {rev or '(no git)'}")


def report(scenario, variants, runs, unavailable):
    base = runs[scenario]["nomod"]
    print(f"\n### {SCENARIOS[scenario]['title']}\n")
    print("| variant | req/s | ratio | cost | CPU cost | budget | p99 ms"
          " | worker busy"
          " | worker µs/req | +µs/req | exporter µs/req | anon KB | requests"
          " | spans sent"
          " | received | lost | dropped (queue full / export failed / other)"
          " |")
    print("|---|--:|--:|--:|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
          "---|")
    notes = []
    for name in variants:
        v = VARIANTS[name]
        if name in unavailable:
            print(f"| {v['label']} | not available ({unavailable[name]}) |"
                  + " |" * 15)
            continue
        rs = runs[scenario][name]
        ok = [r for r in rs if r and "error" not in r]
        if not ok:
            why = next((r["error"] for r in rs if r), "not run")
            print(f"| {v['label']} | failed: {why} |" + " |" * 15)
            continue

        rps = median(r["rps"] for r in ok)
        ratios = [r["rps"] / b["rps"] for r, b in zip(rs, base)
                  if r and b and "error" not in r and "error" not in b]
        ratio = median(ratios)
        cost = None if ratio is None else (1 - ratio) * 100
        pairs = [(r, b) for r, b in zip(rs, base)
                 if r and b and "error" not in r and "error" not in b]
        extra = [r["us_per_request"] - b["us_per_request"] for r, b in pairs]
        # the throughput a CPU-bound worker would lose: 1 - base/variant CPU
        cpu_cost = median((1 - b["us_per_request"] / r["us_per_request"]) * 100
                          for r, b in pairs if r["us_per_request"] > 0)

        spans = "spans_sent" in ok[0]
        sent = sum(r.get("spans_sent", 0) for r in ok)
        received = sum(r.get("spans_received", 0) for r in ok)
        lost = sent - received
        qfull = sum(r.get("dropped_queue_full", 0) for r in ok)
        failed = sum(r.get("dropped_export_failed", 0) for r in ok)
        other = sum(r.get("dropped_too_large", 0)
                    + r.get("dropped_writer_lost", 0) for r in ok)

        budget = v.get("budget", {}).get(scenario)
        if name == "nomod":
            verdict = "baseline"
        elif budget is None:
            verdict = "—"
        else:
            verdict = f"≤ {budget:g}%"
            if cost is not None:
                verdict += ": ok" if cost <= budget else ": OVER"
            if v.get("exports") and (lost or qfull or failed or other):
                verdict += ", spans lost"
        if spans and v.get("exports") and lost == 0 and not (qfull or failed
                                                              or other):
            lost_cell = "0"
        else:
            lost_cell = str(lost) if spans else "—"

        cost_cell = "—" if name == "nomod" else fmt(cost, "+.1f") + "%"
        cpu_cell = "—" if name == "nomod" else fmt(cpu_cost, "+.1f") + "%"
        print(f"| {v['label']} | {rps:,.0f} | {fmt(ratio, '.3f')} "
              f"| {cost_cell} | {cpu_cell} | {verdict} "
              f"| {median(r['p99_ms'] for r in ok):.2f} "
              f"| {median(r['busy_pct'] for r in ok):.0f}% "
              f"| {median(r['us_per_request'] for r in ok):.2f} "
              f"| {fmt(median(extra), '+.2f') if name != 'nomod' else '—'} "
              f"| {median(r['exporter_us_per_request'] for r in ok):.2f} "
              f"| {max(r['anon_growth_kb'] for r in ok):+d} "
              f"| {sum(r['requests'] for r in ok):,} "
              f"| {f'{sent:,}' if spans else '—'} "
              f"| {f'{received:,}' if spans else '—'} | {lost_cell} "
              f"| {f'{qfull} / {failed} / {other}' if spans else '—'} |")

        for r in ok:
            if r.get("errors"):
                notes.append(f"{v['label']}: wrk: {r['errors']}")
            if r.get("sink_bad_bodies"):
                notes.append(f"{v['label']}: the sink could not parse "
                             f"{r['sink_bad_bodies']} bodies")
            if r.get("drained") is False:
                notes.append(f"{v['label']}: spans still missing when the "
                             "wait for the sink ended")
            if spans and r["spans_exported"] != r["spans_received"]:
                notes.append(f"{v['label']}: the module counted "
                             f"{r['spans_exported']} spans exported, the "
                             f"sink {r['spans_received']} received")
            if (spans and v.get("rate") == "1"
                    and r["spans_sent"] + r["spans_sampled_out"]
                    != r["requests"] * SCENARIOS[scenario]["spans"]):
                notes.append(f"{v['label']}: {r['requests']} requests made "
                             f"{r['spans_sent'] + r['spans_sampled_out']} "
                             f"spans, not "
                             f"{SCENARIOS[scenario]['spans']} each")
            if r.get("spans_received") and not spans:
                notes.append(f"{v['label']}: the sink received "
                             f"{r['spans_received']} spans")
            if not r.get("pinned"):
                notes.append(f"{v['label']}: worker_cpu_affinity did not "
                             "pin every thread; taskset did")
        if len(ok) < len(rs):
            notes.append(f"{v['label']}: {len(rs) - len(ok)} of {len(rs)} "
                         "runs failed: "
                         + "; ".join(sorted({r['error'] for r in rs
                                             if r and 'error' in r})))
    busy = median(r["busy_pct"] for name in variants
                  for r in runs[scenario].get(name, []) if r and "busy_pct" in r)
    if busy is not None and busy < 90:
        notes.append(f"the worker's CPU was a median {busy:.0f}% busy while "
                     "wrk ran: something else limited req/s (wrk, or other "
                     "processes), so ratio and cost understate what tracing "
                     "costs a CPU-bound nginx; CPU cost is that estimate")
    per_span = [r["sink_cpu_ms"] * 1e3 / r["spans_received"]
                for name in variants if name not in unavailable
                for r in runs[scenario][name]
                if r and r.get("spans_received")]
    if per_span:
        notes.append("the sink used a median "
                     f"{median(per_span):.2f} µs of the other CPU per span "
                     "while wrk ran (it counts them afterwards)")
    for n in dict.fromkeys(notes):
        print(f"\n- {n}", end="")
    if notes:
        print()


def main():
    if not os.path.exists(MODULE):
        sys.exit(f"{MODULE} is missing: run make")
    if not shutil.which("wrk"):
        sys.exit("wrk is missing: apt-get install wrk")

    scenarios = env_list("BENCH_SCENARIOS", SCENARIOS, SCENARIO_ALIASES)
    variants = env_list("BENCH_VARIANTS", VARIANTS)
    if "nomod" in variants:
        variants.remove("nomod")
    variants.insert(0, "nomod")
    if MODULE_B:
        if not os.path.exists(MODULE_B):
            sys.exit(f"{MODULE_B} is missing")
        for name in list(variants):
            if VARIANTS[name].get("module"):
                VARIANTS[name + "/B"] = dict(VARIANTS[name],
                                             label=VARIANTS[name]["label"]
                                             + " [B]",
                                             module_path=MODULE_B)
                variants.insert(variants.index(name) + 1, name + "/B")

    cpus = sorted(os.sched_getaffinity(0))
    cpu = int(os.environ.get("BENCH_CPU", cpus[-1]))
    others = [c for c in cpus if c != cpu]
    if not others:
        sys.exit("make bench needs 2 CPUs: the worker's, and one for wrk, "
                 "the backend and the sink")
    # this script, and so wrk, the backend and the sink: off the worker's CPU
    os.sched_setaffinity(0, others)

    sink_bin = build_tool("bench_sink", ["sdk/bench/bench_sink.c"], ["-lz"])
    check_bin = build_tool("bench_sink_check",
                           ["sdk/bench/bench_sink_check.c"] + sdk_sources(),
                           ["-lcurl", "-ljansson", "-lpthread", "-lz"])
    check = subprocess.run([check_bin], capture_output=True, text=True)
    if check.returncode != 0:
        sys.exit("the sink does not count exactly:\n" + check.stdout)
    log(check.stdout.strip())

    tmp = tempfile.mkdtemp(prefix="vaquero-bench-")
    os.chmod(tmp, 0o755)
    started = []
    sink = None
    results = {"date": None, "machine": None, "runs": []}

    try:
        unavailable = {}
        for name in variants:
            p = VARIANTS[name].get("protocol")
            if p:
                why = protocol_available(tmp, p)
                if why:
                    unavailable[name] = f"nginx -t: {why}"
        todo = [n for n in variants if n not in unavailable]

        sink = subprocess.Popen([sink_bin, "0", SINK_MB],
                                stdout=subprocess.PIPE, text=True)
        sink_port = int(sink.stdout.readline().split()[1])

        backend_port = free_port()
        bd = f"{tmp}/backend"
        bmaster, _ = start_nginx(bd, nginx_conf(bd, f"""
    server {{
        listen 127.0.0.1:{backend_port};
        location / {{ return 200 "ok"; }}
    }}"""))
        started.append((bd, bmaster))
        wait_port(backend_port)

        bench = Bench(tmp, cpu, sink_port, sink.pid, backend_port)
        now = datetime.datetime.now(datetime.timezone.utc)
        results["date"] = now.strftime("%Y-%m-%d %H:%M UTC")
        results["machine"] = machine()
        runs = {s: {n: [None] * ROUNDS for n in variants} for s in scenarios}

        nruns = ROUNDS * len(scenarios) * len(todo)
        log(f"{nruns} runs of {SECONDS} s: about "
            f"{nruns * (SECONDS + 1.5) / 60:.0f} min")

        # a short untimed run first: caches, CPU clocks, the backend
        for s in scenarios:
            bench.run(s, "nomod", seconds=1)

        for rnd in range(ROUNDS):
            for s in scenarios:
                k = rnd % len(todo)
                for name in todo[k:] + todo[:k]:
                    try:
                        r = bench.run(s, name)
                    except Exception as e:     # one failed run, not all
                        r = {"error": str(e).splitlines()[0][:120]}
                    runs[s][name][rnd] = r
                    results["runs"].append(dict(r, round=rnd + 1,
                                                scenario=s, variant=name))
                    if "error" in r:
                        log(f"round {rnd + 1}/{ROUNDS} {s} {name}: FAILED "
                            f"{r['error']}")
                        continue
                    spans = (f", spans {r['spans_sent']} sent "
                             f"{r['spans_received']} received"
                             if "spans_sent" in r else "")
                    log(f"round {rnd + 1}/{ROUNDS} {s:<9} {name:<9} "
                        f"{r['rps']:9.0f} req/s  p99 {r['p99_ms']:.2f} ms  "
                        f"{r['us_per_request']:.2f} us/req{spans}")

        cfg = (f"batch {BATCH or 'default (100)'}, flush {FLUSH}, "
               f"queue {QUEUE or 'default (8m)'}")
        print(f"## make bench, {results['date']}\n")
        print(f"{results['machine']}.  ")
        print(f"{ROUNDS} rounds x {SECONDS} s per run, wrk -t1 -c{CONNECTIONS} "
              f"--latency; nginx restarted for each run, 1 worker pinned to "
              f"CPU {cpu} (exporter thread included); wrk, backend, sink on "
              f"CPU {','.join(map(str, others))}; upstream keepalive "
              f"{KEEPALIVE}; exporting: {cfg}.  ")
        print("ratio: median over rounds of req/s / baseline req/s in the same "
              "round; cost = 1 - ratio; CPU cost: median over rounds of "
              "1 - baseline / variant worker µs/req, the throughput a "
              "CPU-bound worker would lose; p99, worker busy (its CPU's use while "
              "wrk ran) and worker µs/req (all threads, per request nginx "
              "served): medians; +µs/req: median per-round "
              "difference to the baseline; anon KB: worker heap growth over "
              "the last 3/4 of a run, largest; spans: totals over rounds, "
              "sent = spans_recorded, received = counted by the sink.")
        for s in scenarios:
            report(s, variants, runs, unavailable)

        if JSON_OUT:
            with open(JSON_OUT, "w") as f:
                json.dump(results, f, indent=1)
    finally:
        for d, m in started:
            stop_nginx(d, m)
        if sink:
            sink.terminate()
            sink.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
