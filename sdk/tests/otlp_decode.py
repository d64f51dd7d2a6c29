#!/usr/bin/python3
"""Decodes OTLP protobuf bodies with Debian's protobuf, for test_otlp.

    otlp_decode.py PROTO_DIR BODY...

For each BODY (a file holding one ExportTraceServiceRequest in protobuf
binary), prints one line: the message in the OTLP JSON encoding (hex ids,
int64 as decimal strings, integer enums, lowerCamelCase keys), so that the
C test can compare it with what the JSON encoder wrote for the same
records.  Exits 1 with a message on stderr when a body does not parse
(e.g. a string that is not UTF-8), holds fields otlp_trace.proto does not
know, or is not canonical (serializing the parsed message again does not
give the same bytes: field order, varint widths, left-out defaults).

The message classes are made by protoc from PROTO_DIR/otlp_trace.proto,
into a temporary directory (removed once they are loaded), each run.
"""

import base64
import importlib
import json
import os
import subprocess
import sys
import tempfile


def load_module(proto_dir):
    with tempfile.TemporaryDirectory(prefix="otlp_decode.") as out:
        subprocess.run(["protoc", "-I" + proto_dir, "--python_out=" + out,
                        "otlp_trace.proto"], check=True)
        sys.path.insert(0, out)
        module = importlib.import_module("otlp_trace_pb2")
        sys.path.remove(out)
        return module


def any_value(v):
    which = v.WhichOneof("value")
    if which == "string_value":
        return {"stringValue": v.string_value}
    if which == "bool_value":
        return {"boolValue": v.bool_value}
    if which == "int_value":
        return {"intValue": str(v.int_value)}
    if which == "double_value":
        return {"doubleValue": v.double_value}
    if which == "array_value":
        return {"arrayValue": {"values": [any_value(x)
                                          for x in v.array_value.values]}}
    if which == "kvlist_value":
        return {"kvlistValue": {"values": [key_value(x)
                                           for x in v.kvlist_value.values]}}
    if which == "bytes_value":
        return {"bytesValue": base64.b64encode(v.bytes_value).decode()}
    return {}


def key_value(kv):
    return {"key": kv.key, "value": any_value(kv.value)}


def span(s):
    d = {"traceId": s.trace_id.hex(), "spanId": s.span_id.hex()}
    if s.trace_state:
        d["traceState"] = s.trace_state
    if s.parent_span_id:
        d["parentSpanId"] = s.parent_span_id.hex()
    d["flags"] = s.flags
    d["name"] = s.name
    d["kind"] = s.kind
    d["startTimeUnixNano"] = str(s.start_time_unix_nano)
    d["endTimeUnixNano"] = str(s.end_time_unix_nano)
    d["attributes"] = [key_value(a) for a in s.attributes]
    if s.HasField("status"):
        st = {}
        if s.status.message:
            st["message"] = s.status.message
        st["code"] = s.status.code
        d["status"] = st
    return d


def request(r):
    return {"resourceSpans": [{
        "resource": {"attributes": [key_value(a)
                                    for a in rs.resource.attributes]},
        "scopeSpans": [{
            "scope": {"name": ss.scope.name, "version": ss.scope.version},
            "spans": [span(s) for s in ss.spans],
        } for ss in rs.scope_spans],
    } for rs in r.resource_spans]}


def main():
    pb = load_module(sys.argv[1])

    for path in sys.argv[2:]:
        with open(path, "rb") as f:
            body = f.read()

        r = pb.ExportTraceServiceRequest()
        try:
            r.ParseFromString(body)
        except Exception as e:
            sys.exit("%s: does not parse: %s" % (path, e))

        again = r.SerializeToString(deterministic=True)
        r.DiscardUnknownFields()
        known = r.SerializeToString(deterministic=True)

        if known != again:
            sys.exit("%s: fields otlp_trace.proto does not know" % path)
        if again != body:
            sys.exit("%s: not canonical: %d bytes, %d serialized again"
                     % (path, len(body), len(again)))

        print(json.dumps(request(r), ensure_ascii=False))


if __name__ == "__main__":
    main()
