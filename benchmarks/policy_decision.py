"""A permission-gate decision against an empty decision, in the same process.

    python -m benchmarks.policy_decision [--decisions 5000] [--out DIR] [--write]

"Empty" builds the same request and returns allow without Cedar; the policy decision runs
the shipped policies through ``PolicyEngine.decide`` (including the second evaluation
that finds "needs approval", or checks that masking suffices).
"""

from __future__ import annotations

import argparse
import statistics
import time

from rich.console import Console
from rich.table import Table

from benchmarks.output import add_arguments, save
from chamberlain.workflows._policy import MODEL_ACTION, GateDecision, GateRequest, PolicyEngine, ResourceRef
from chamberlain.workflows._types import Principal

SUPPORT = Principal(id="li", roles=["support"], department="support")


def refund(amount: float) -> GateRequest:
    order = ResourceRef(type="Order", id="A1", attributes={"amount": amount})
    return GateRequest(principal=SUPPORT, action="erp.refund.create", resource=order)


def model_call(labels: list[str], tier: str) -> GateRequest:
    """A model step sending data with ``labels`` to a model of ``tier`` trusted with none of them."""
    model = ResourceRef(type="Model", id="m")
    return GateRequest(principal=SUPPORT, action=MODEL_ACTION, resource=model, labels=labels, tier=tier, trusted=[])


REQUESTS = {
    "allow (refund 150 CNY)": refund(150),
    "needs approval (refund 5000)": refund(5000),
    "mask (PII to an external model)": model_call(["pii"], "external"),
    "deny (finance data to an untrusted model)": model_call(["finance"], "private"),
}


def empty(request: GateRequest) -> GateDecision:
    return GateDecision(outcome="allow", policies=[request.action])


def timed(fn: object, request: GateRequest, n: int) -> list[float]:
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        fn(request)  # type: ignore[operator]
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--decisions", type=int, default=5000)
    add_arguments(parser)
    args = parser.parse_args(argv)
    engine = PolicyEngine.load()
    summary: dict[str, dict[str, float]] = {}
    table = Table("decision", "p50 ms", "p99 ms", "empty p50 ms", "empty p99 ms")
    for name, request in REQUESTS.items():
        timed(engine.decide, request, 200)  # warm up
        policy, baseline = [], []
        for _ in range(args.decisions // 100):  # interleaved batches
            policy += timed(engine.decide, request, 100)
            baseline += timed(empty, request, 100)
        p = statistics.quantiles(policy, n=100)
        b = statistics.quantiles(baseline, n=100)
        summary[name] = {
            "p50_ms": round(p[49], 3),
            "p99_ms": round(p[98], 3),
            "empty_p50_ms": round(b[49], 4),
            "empty_p99_ms": round(b[98], 4),
        }
        table.add_row(name, *(f"{v}" for v in summary[name].values()))
    Console().print(table)
    save("policy_decision", summary, args)


if __name__ == "__main__":
    main()
