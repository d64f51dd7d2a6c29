"""A small FastAPI service that the tests and the demo put behind nginx.

With VAQUERO_ENDPOINT set, it also reports one span per request to that
Vaquero endpoint, as an app instrumented with the Vaquero SDK would, and
continues the W3C trace context that nginx (or any client) sends it:

  - exactly one valid `traceparent`: the app's span joins that trace as a
    child of the incoming parent id, and is an `agents[]` item;
  - none, several, or an invalid one: the app starts a new trace, and its
    span is a `traces[]` item.

Standard library only (the real SDK is not installed where this runs).

    VAQUERO_ENDPOINT      base URL; spans are posted to {URL}/api/v1/traces/batch.
                          Unset: nothing is reported, nothing else changes.
    VAQUERO_AGENT_NAME    the spans' agent name      (default "fastapi-app")
    VAQUERO_SERVICE_NAME  the traces' service name   (default "fastapi-app")
    VAQUERO_FLUSH_MS      longest a span waits in a partial batch (default 100)
    VAQUERO_BATCH_SIZE    most spans per batch       (default 100)
    VAQUERO_MODE          the traces' environment    (default "development")
    VAQUERO_API_KEY       sent as "Authorization: Bearer KEY" when set
    VAQUERO_PROJECT_ID    sent as "X-Project-ID", and in each trace's metadata
"""

import asyncio
import atexit
import datetime
import json
import os
import queue
import secrets
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from starlette.datastructures import URL

app = FastAPI()

ITEMS = {1: "lasso", 2: "saddle", 3: "spurs"}


@app.get("/api/items/{item_id}")
async def get_item(item_id: int):
    if item_id not in ITEMS:
        raise HTTPException(status_code=404, detail="no such item")
    return {"id": item_id, "name": ITEMS[item_id]}


@app.post("/api/items", status_code=201)
async def create_item(request: Request):
    body = await request.body()
    return {"received_bytes": len(body)}


@app.get("/api/boom")
async def boom():
    raise HTTPException(status_code=500, detail="the backend failed")


@app.get("/api/slow")
async def slow(ms: int = 50):
    await asyncio.sleep(ms / 1000)
    return {"slept_ms": ms}


@app.get("/api/headers")
async def headers(request: Request):
    return dict(request.headers)


@app.get("/api/raw-headers")
async def raw_headers(request: Request):
    """Every header line as received, in order, repeated ones kept.

    Names are lowercase: the HTTP server (uvicorn) lowercases them.
    """
    return [[name.decode("latin-1"), value.decode("latin-1")]
            for name, value in request.scope["headers"]]


ANY_METHOD = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


@app.api_route("/api/status/{code}", methods=ANY_METHOD)
async def status(code: int):
    """Answers with that status code (200..599)."""
    if not 200 <= code <= 599:
        raise HTTPException(status_code=400, detail="code must be 200..599")
    if code in (204, 304):
        return Response(status_code=code)
    return JSONResponse({"status": code}, status_code=code)


@app.api_route("/api/auth", methods=ANY_METHOD)
async def auth(request: Request):
    """An auth_request target: 204 with an X-User-Id header, 401 without."""
    if request.headers.get("x-user-id"):
        return Response(status_code=204)
    return Response(status_code=401)


###########################################################################
# W3C Trace Context in


HEX = frozenset("0123456789abcdef")


def _hex(s):
    return all(c in HEX for c in s)


def parse_traceparent(values):
    """The incoming context from the request's traceparent header values.

    Returns (trace_id, parent_id, flags) as lowercase hex strings, or None
    when there is no valid context: no header, more than one, or a value
    that W3C Trace Context says to ignore.
    """
    if len(values) != 1:
        return None                 # several: which one is the parent? none
    v = values[0]

    version = v[0:2]
    if len(v) < 55 or not _hex(version) or version == "ff":
        return None
    if version == "00" and len(v) != 55:
        return None
    if len(v) > 55 and v[55] != "-":
        return None                 # a later version may only append "-..."
    if v[2] != "-" or v[35] != "-" or v[52] != "-":
        return None

    trace_id, parent_id, flags = v[3:35], v[36:52], v[53:55]
    if not (_hex(trace_id) and _hex(parent_id) and _hex(flags)):
        return None                 # uppercase hex is invalid too
    if trace_id == "0" * 32 or parent_id == "0" * 16:
        return None
    return trace_id, parent_id, flags


###########################################################################
# Spans out


def iso_time(us):
    """Microseconds since the epoch as ISO-8601 UTC with microseconds and Z."""
    t = datetime.datetime.fromtimestamp(us // 1_000_000, datetime.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{us % 1_000_000:06d}Z"


def new_span_id():
    while True:
        span_id = secrets.token_hex(8)
        if span_id != "0" * 16:
            return span_id


class Reporter:
    """Queues spans and sends them in batches from one background thread.

    report() never blocks: a full queue drops the span (and counts it).
    close() sends what is queued, and stops the thread.
    """

    _STOP = object()

    def __init__(self, endpoint, flush_ms=100, batch_size=100,
                 api_key=None, project_id=None):
        self.url = endpoint.rstrip("/") + "/api/v1/traces/batch"
        self.flush_s = flush_ms / 1000
        self.batch_size = batch_size
        self.headers = {"Content-Type": "application/json",
                        "User-Agent": "vaquero-fastapi-test-app/0.1"}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"
        if project_id:
            self.headers["X-Project-ID"] = project_id
        # loopback collectors: never through an http_proxy from the environment
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        self.queue = queue.Queue(maxsize=10000)
        self.dropped = 0
        self.lock = threading.Lock()
        self.thread = None
        self.closed = False

    def report(self, kind, item):
        """kind: "traces" or "agents"."""
        with self.lock:
            if self.closed:
                return
            if self.thread is None:     # started here, in the serving process
                self.thread = threading.Thread(target=self._run, daemon=True,
                                               name="vaquero-reporter")
                self.thread.start()
        try:
            self.queue.put_nowait((kind, item))
        except queue.Full:
            self.dropped += 1

    def close(self, timeout=3.0):
        with self.lock:
            if self.closed:
                return
            self.closed = True
            thread = self.thread
        if thread is not None:
            self.queue.put(self._STOP)
            thread.join(timeout)

    def _run(self):
        stop = False
        while not stop:
            item = self.queue.get()             # wait for a batch's first span
            deadline = time.monotonic() + self.flush_s
            batch = []
            while True:
                if item is self._STOP:
                    stop = True
                    break
                batch.append(item)
                if len(batch) >= self.batch_size:
                    break
                try:
                    item = self.queue.get(
                        timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
            if batch:
                self._send(batch)

    def _send(self, batch):
        body = {"traces": [], "agents": [], "dependencies": []}
        for kind, item in batch:
            body[kind].append(item)
        data = json.dumps(body).encode()

        for attempt in range(3):
            if attempt:
                time.sleep(0.1 * 2 ** attempt)
            try:
                req = urllib.request.Request(self.url, data=data, method="POST",
                                             headers=self.headers)
                with self.opener.open(req, timeout=5) as resp:
                    resp.read()
                return
            except urllib.error.HTTPError as e:
                error = f"HTTP {e.code}"
                if e.code < 500 and e.code not in (408, 429):
                    break                       # the collector will not take it
            except (OSError, urllib.error.URLError) as e:
                error = str(e)
        print(f"vaquero: export of {len(batch)} span(s) to {self.url} failed: "
              f"{error}", file=sys.stderr, flush=True)


class VaqueroMiddleware:
    """One span per HTTP request, child of the incoming trace context.

    Records what the Vaquero FastAPI guide's middleware records (method,
    url, route, status code, request and response sizes, user agent,
    content type, client address, response time), and the traceparent
    received, so that tests can see what reached the app.
    """

    def __init__(self, app, reporter, agent_name, service_name,
                 environment, project_id):
        self.app = app
        self.reporter = reporter
        self.agent_name = agent_name
        self.service_name = service_name
        self.environment = environment
        self.project_id = project_id
        self.hostname = socket.gethostname()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        start_us = time.time_ns() // 1000
        start = time.perf_counter_ns()
        seen = {"status": None, "request_bytes": 0, "response_bytes": 0,
                "end": None}

        async def counting_receive():
            message = await receive()
            if message["type"] == "http.request":
                seen["request_bytes"] += len(message.get("body", b""))
            return message

        async def watching_send(message):
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
            elif message["type"] == "http.response.body":
                seen["response_bytes"] += len(message.get("body", b""))
            await send(message)
            if message["type"] == "http.response.body" \
                    and not message.get("more_body", False):
                seen["end"] = time.perf_counter_ns()    # the response is out

        error = None
        try:
            await self.app(scope, counting_receive, watching_send)
        except Exception as e:      # the server answers 500; the span says why
            error = e
            raise
        finally:
            duration_us = ((seen["end"] or time.perf_counter_ns()) - start) // 1000
            try:
                self._report(scope, seen, error, start_us, duration_us)
            except Exception as e:  # tracing never breaks the request
                print(f"vaquero: span not reported: {e!r}", file=sys.stderr)

    def _report(self, scope, seen, error, start_us, duration_us):
        headers = {}
        for name, value in scope["headers"]:
            headers.setdefault(name.decode("latin-1"), []).append(
                value.decode("latin-1"))

        def header(name):
            values = headers.get(name)
            return ", ".join(values) if values else None

        context = parse_traceparent(headers.get("traceparent", []))

        status_code = seen["status"] or 500
        route = scope.get("route")
        route = getattr(route, "path", None)
        span_name = f"{scope['method']} {route or scope['path']}"

        content_length = header("content-length")
        request_size = (int(content_length) if content_length
                        and content_length.isdigit() else seen["request_bytes"])

        attributes = {
            "request_id": header("x-request-id") or uuid.uuid4().hex,
            "method": scope["method"],
            "url": str(URL(scope=scope)),
            "route": route,
            "status_code": status_code,
            "request_size_bytes": request_size,
            "response_size_bytes": seen["response_bytes"],
            "user_agent": header("user-agent"),
            "content_type": header("content-type"),
            "client_ip": scope["client"][0] if scope.get("client") else None,
            "response_time_ms": duration_us / 1000,
            "traceparent_received": header("traceparent"),
            "tracestate_received": header("tracestate"),
        }
        attributes = {k: v for k, v in attributes.items() if v is not None}

        failed = error is not None or status_code >= 500
        common = {
            "start_time": iso_time(start_us),
            "end_time": iso_time(start_us + duration_us),
            "duration_ms": duration_us // 1000,
            "status": "failed" if failed else "completed",
        }
        span_id = new_span_id()

        if context is None:
            # no (valid) parent: the app starts a trace, as nginx would
            item = {
                "trace_id": str(uuid.uuid4()),
                "name": span_name,
                **common,
                "error_count": 1 if failed else 0,
                "environment": self.environment,
                "hostname": self.hostname,
                "sdk_version": "0.1.0",
                "tags": {},
                "raw_data": {
                    "attributes": attributes,
                    "metadata": {
                        "span_id": span_id,
                        "parent_span_id": None,
                        "agent_name": self.agent_name,
                        "service_name": self.service_name,
                        "project_id": self.project_id,
                    },
                },
            }
            self.reporter.report("traces", item)
            return

        trace_id, parent_id, flags = context
        attributes["sampled"] = bool(int(flags, 16) & 1)
        item = {
            "trace_id": str(uuid.UUID(hex=trace_id)),
            "agent_id": span_id,
            "name": self.agent_name,
            "type": self.agent_name,
            **common,
        }
        if failed:
            if error is not None:
                item["error_type"] = type(error).__name__
                item["error_message"] = str(error)
            else:
                item["error_type"] = "HTTPError"
                item["error_message"] = f"HTTP {status_code}"
        item["tags"] = {}
        item["raw_data"] = {
            "span_name": span_name,
            "span_kind": "server",
            "attributes": attributes,
            "parent_span_id": parent_id,
        }
        self.reporter.report("agents", item)


def _instrument(app):
    endpoint = os.environ.get("VAQUERO_ENDPOINT")
    if not endpoint:
        return
    project_id = os.environ.get("VAQUERO_PROJECT_ID") or None
    reporter = Reporter(endpoint,
                        flush_ms=int(os.environ.get("VAQUERO_FLUSH_MS", "100")),
                        batch_size=int(os.environ.get("VAQUERO_BATCH_SIZE", "100")),
                        api_key=os.environ.get("VAQUERO_API_KEY"),
                        project_id=project_id)
    app.add_middleware(
        VaqueroMiddleware, reporter=reporter,
        agent_name=os.environ.get("VAQUERO_AGENT_NAME", "fastapi-app"),
        service_name=os.environ.get("VAQUERO_SERVICE_NAME", "fastapi-app"),
        environment=os.environ.get("VAQUERO_MODE", "development"),
        project_id=project_id)
    # send what is queued when uvicorn shuts down (and, failing that, at exit)
    app.add_event_handler("shutdown", reporter.close)
    atexit.register(reporter.close)


_instrument(app)
