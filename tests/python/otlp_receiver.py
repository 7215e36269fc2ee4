"""An OTLP/gRPC trace receiver for the tests: the collector the sidecar
exports its spans to (``OTEL_EXPORTER_OTLP_ENDPOINT``), on 127.0.0.1.

It keeps every span it receives, with its resource's ``service.name``;
:meth:`OtlpReceiver.wait_for` polls them until a condition holds.
"""

from __future__ import annotations

import threading
import time
from concurrent import futures
from dataclasses import dataclass
from typing import Callable

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2


@dataclass
class ReceivedSpan:
    service: str
    span: trace_pb2.Span

    @property
    def name(self) -> str:
        return self.span.name

    @property
    def trace_id(self) -> str:
        return self.span.trace_id.hex()

    @property
    def span_id(self) -> str:
        return self.span.span_id.hex()

    @property
    def parent_span_id(self) -> str:
        return self.span.parent_span_id.hex()

    def attr(self, key: str) -> str | None:
        for kv in self.span.attributes:
            if kv.key == key:
                v = kv.value
                kind = v.WhichOneof("value")
                return str(getattr(v, kind)) if kind else ""
        return None


class _Service(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, sink: "OtlpReceiver") -> None:
        self._sink = sink

    def Export(self, request, context):  # noqa: N802 - gRPC method name
        got = []
        for rs in request.resource_spans:
            service = ""
            for kv in rs.resource.attributes:
                if kv.key == "service.name":
                    service = kv.value.string_value
            for ss in rs.scope_spans:
                got.extend(ReceivedSpan(service, s) for s in ss.spans)
        with self._sink._lock:
            self._sink._spans.extend(got)
        return trace_service_pb2.ExportTraceServiceResponse()


class OtlpReceiver:
    """A running receiver; :attr:`endpoint` is its ``http://host:port``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spans: list[ReceivedSpan] = []
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_Service(self), self._server)
        port = self._server.add_insecure_port("127.0.0.1:0")
        self._server.start()
        self.endpoint = f"http://127.0.0.1:{port}"

    def spans(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self._spans)

    def wait_for(self, what: str, done: Callable[[list[ReceivedSpan]], bool], timeout: float = 30.0) -> list[ReceivedSpan]:
        deadline = time.monotonic() + timeout
        while True:
            spans = self.spans()
            if done(spans):
                return spans
            if time.monotonic() > deadline:
                names = sorted({s.name for s in spans})
                raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; span names received: {names}")
            time.sleep(0.1)

    def stop(self) -> None:
        self._server.stop(grace=None)
