"""Every benchmark, one after another, sized to finish in under 15 minutes on 2 cores:

    python -m benchmarks [--out DIR] [--write] [--only NAME ...]     (or: make bench)

Results go to the results folder (default ``$CHAMBERLAIN_DATA/benchmarks``); ``--write``
also replaces the committed figures in ``docs/benchmarks/``. Each benchmark measures its own
baseline in the same run and reports the ratio.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from rich.console import Console

from benchmarks import graph_overhead, intent_eval, parked, policy_decision, throughput, webhook_ingress
from benchmarks.output import add_arguments, default_folder

SUITE: dict[str, tuple[Callable[[list[str]], None], list[str]]] = {
    "policy_decision": (policy_decision.main, ["--decisions", "5000"]),
    "graph_overhead": (graph_overhead.main, ["--steps", "20", "--runs", "10"]),
    "throughput": (throughput.main, ["--runs", "200", "--rounds", "3"]),
    "parked": (parked.main, ["--runs", "1000"]),
    "webhook_ingress": (webhook_ingress.main, ["--requests", "200", "--rounds", "2"]),
    "intent_eval": (intent_eval.cli, []),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    parser.add_argument("--only", nargs="+", choices=list(SUITE), help="run only these")
    args = parser.parse_args()
    shared = (["--out", str(args.out)] if args.out else []) + (["--write"] if args.write else [])
    console = Console()
    started = time.perf_counter()
    for name, (run, options) in SUITE.items():
        if args.only and name not in args.only:
            continue
        console.rule(name)
        began = time.perf_counter()
        run([*options, *shared])
        console.print(f"{name}: {time.perf_counter() - began:.0f} s")
    folder = args.out or default_folder()
    console.rule(f"all done in {(time.perf_counter() - started) / 60:.1f} min; results in {folder}")


if __name__ == "__main__":
    main()
