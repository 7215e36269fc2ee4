"""One trace from a Python executor into the sidecar.

The executor's OpenTelemetry SDK starts a span and calls GetStatus and
EnsureEth with the W3C context (traceparent, and baggage) injected into the
gRPC metadata; the sidecar exports its spans over OTLP to the test's
receiver (conftest's ``otlp_receiver``). Its server spans must be children
of the executor's span, in the executor's trace, and the work under them
(down to each JSON-RPC call) in the same trace.

Read-only: the EnsureEth asks for less than the wallet holds, so nothing is
sent and the devnet wallet stays fresh for test_ensure.py.
"""

from __future__ import annotations

from opentelemetry import baggage, context
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from walletbalancer.v1 import wallet_balancer_pb2 as pb

CHAIN = "devnet"

ENSURE = "walletbalancer.v1.WalletBalancer/EnsureEth"
STATUS = "walletbalancer.v1.WalletBalancer/GetStatus"


def test_sidecar_spans_continue_the_executors_trace(sidecar, otlp_receiver):
    # A provider of our own (not the global one): nothing else in the test
    # session is traced. No exporter: only the ids matter here.
    tracer = TracerProvider().get_tracer("executor")
    propagator = CompositePropagator([TraceContextTextMapPropagator(), W3CBaggagePropagator()])

    with tracer.start_as_current_span("executor.trade") as span:
        token = context.attach(baggage.set_baggage("trade.id", "py-8812"))
        try:
            carrier: dict[str, str] = {}
            propagator.inject(carrier)
        finally:
            context.detach(token)
        metadata = list(carrier.items())
        assert any(k == "traceparent" for k, _ in metadata), metadata

        sidecar.stub.GetStatus(pb.GetStatusRequest(chain=CHAIN), metadata=metadata, timeout=30)
        r = sidecar.stub.EnsureEth(
            pb.EnsureEthRequest(chain=CHAIN, required_wei="1", request_id="py-traced-1"),
            metadata=metadata,
            timeout=60,
        )
        assert r.outcome == pb.ENSURE_OUTCOME_SUFFICIENT, r
        ctx = span.get_span_context()
    trace_id = f"{ctx.trace_id:032x}"
    span_id = f"{ctx.span_id:016x}"

    def server_spans(spans):
        return [s for s in spans if s.trace_id == trace_id and s.name in (ENSURE, STATUS)]

    spans = otlp_receiver.wait_for(
        "the sidecar's GetStatus and EnsureEth server spans",
        lambda spans: {s.name for s in server_spans(spans)} == {ENSURE, STATUS},
    )
    ours = [s for s in spans if s.trace_id == trace_id]

    # The server spans are children of the executor's span.
    for s in server_spans(spans):
        assert s.parent_span_id == span_id, f"{s.name}: parent {s.parent_span_id}, caller {span_id}"
        assert s.service == "wallet-balancer", s.service
        assert s.attr("rpc.grpc.status_code") == "0", s.name
        assert s.attr("baggage.trade.id") == "py-8812", s.name

    # Every other span of the trace hangs off one of the trace's spans, and
    # the JSON-RPC calls are there, naming endpoints by scheme://host:port.
    ids = {s.span_id for s in ours}
    for s in ours:
        if s.name not in (ENSURE, STATUS):
            assert s.parent_span_id in ids, f"{s.name} has a parent outside the trace"
    names = {s.name for s in ours}
    for expected in ("EnsureEth", "GetStatus", "snapshot"):
        assert expected in names, f"no {expected} span in {sorted(names)}"
    # A snapshot is one JSON-RPC batch: its block header and its eth_call.
    snapshot_rpc = "batch:eth_getBlockByNumber+eth_call"
    assert snapshot_rpc in names, f"no {snapshot_rpc} span in {sorted(names)}"
    rpc_url = sidecar.rpc_url.rstrip("/")
    for s in ours:
        if s.name == snapshot_rpc:
            assert s.attr("rpc.endpoint") == rpc_url, s.attr("rpc.endpoint")
