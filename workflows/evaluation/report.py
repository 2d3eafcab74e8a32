"""What an evaluation found: per-field accuracy, escalation, denials, latency, tokens and cost;
two configurations side by side with McNemar's exact test; thresholds for CI; a PNG chart.

McNemar's test fits paired correctness: both configurations answer the same cases, and only
the cases where exactly one of them is right say anything about which is better. Exact form:
under "no difference" those discordant cases split like fair coin flips, so the two-sided
p-value is ``2 · P(X ≤ min(b, c))`` for ``X ~ Binomial(b + c, ½)``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from chamberlain.workflows.evaluation.cases import Case, Outcome, same, score


class CaseResult(BaseModel):
    case: str
    lang: str | None = None
    outcome: Outcome
    scores: dict[str, bool]
    differs: list[str] = []  # replay: the fields where the recorded run ended otherwise

    @property
    def correct(self) -> bool:
        return all(self.scores.values()) and self.outcome.status != "failed"


class Summary(BaseModel):
    config: str
    cases: int
    accuracy: float
    fields: dict[str, float]
    by_lang: dict[str, float]
    by_group: dict[str, float] = {}
    escalation_rate: float
    denials: int
    failed: int
    latency_p50: float
    latency_p95: float
    tokens_per_case: float
    cost_per_case: float
    differing: int = 0


class Comparison(BaseModel):
    a: str
    b: str
    only_a_right: list[str]
    only_b_right: list[str]
    p_value: float
    fields: dict[str, tuple[float, float]]


def results(
    cases: Sequence[Case], outcomes: Sequence[Outcome], recorded: dict[str, Any] | None = None
) -> list[CaseResult]:
    """Score each outcome; with ``recorded`` outcomes (a replay), name the fields that changed."""
    found = []
    for case, outcome in zip(cases, outcomes, strict=True):
        differs = differences(case, recorded[case.id], outcome) if recorded and case.id in recorded else []
        found.append(
            CaseResult(case=case.id, lang=case.lang, outcome=outcome, scores=score(case, outcome), differs=differs)
        )
    return found


COMPARED = ("status", "decision", "escalate", "effects", "refund_total", "denials")


def differences(case: Case, recorded: dict[str, Any], outcome: Outcome) -> list[str]:
    """The decisive fields (and the case's expected ones) where a replay ended otherwise than
    the recorded run; free text a model writes (a reply) is not compared unless expected."""
    before = Outcome.model_validate(recorded)
    names = dict.fromkeys([*COMPARED, *(k for k in case.expect if k != "must_not")])
    return [name for name in names if not same(before.field(name), outcome.field(name))]


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def summarize(config: str, found: Sequence[CaseResult]) -> Summary:
    n = len(found) or 1
    fields: dict[str, list[bool]] = {}
    langs: dict[str, list[bool]] = {}
    groups: dict[str, list[bool]] = {}
    for r in found:
        for name, ok in r.scores.items():
            fields.setdefault(name, []).append(ok)
        langs.setdefault(r.lang or "-", []).append(r.correct)
        groups.setdefault(group_of(r.case), []).append(r.correct)
    latencies = [r.outcome.latency for r in found]
    return Summary(
        config=config,
        cases=len(found),
        accuracy=_rate(r.correct for r in found),
        fields={name: _rate(oks) for name, oks in sorted(fields.items())},
        by_lang={lang: _rate(oks) for lang, oks in sorted(langs.items())},
        by_group={group: _rate(oks) for group, oks in sorted(groups.items())},
        escalation_rate=_rate(r.outcome.escalate for r in found),
        denials=sum(r.outcome.denials for r in found),
        failed=sum(r.outcome.status == "failed" for r in found),
        latency_p50=round(percentile(latencies, 50), 3),
        latency_p95=round(percentile(latencies, 95), 3),
        tokens_per_case=round(sum(r.outcome.tokens for r in found) / n, 1),
        cost_per_case=round(sum(r.outcome.cost for r in found) / n, 6),
        differing=sum(bool(r.differs) for r in found),
    )


def group_of(case_id: str) -> str:
    """A case's group: its ID without a trailing number (``return-large-2`` → ``return-large``)."""
    return re.sub(r"[-_]?\d+$", "", case_id) or case_id


def _rate(values: Any) -> float:
    values = list(values)
    return round(sum(values) / len(values), 4) if values else 0.0


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value from the discordant pair counts."""
    n = only_a + only_b
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(only_a, only_b) + 1)) / 2**n
    return min(1.0, 2 * tail)


def compare(a: Summary, a_found: Sequence[CaseResult], b: Summary, b_found: Sequence[CaseResult]) -> Comparison:
    right_b = {r.case: r.correct for r in b_found}
    only_a = [r.case for r in a_found if r.correct and not right_b[r.case]]
    only_b = [r.case for r in a_found if not r.correct and right_b[r.case]]
    fields = {name: (a.fields.get(name, 0.0), b.fields.get(name, 0.0)) for name in sorted({*a.fields, *b.fields})}
    return Comparison(
        a=a.config,
        b=b.config,
        only_a_right=only_a,
        only_b_right=only_b,
        p_value=round(mcnemar_exact(len(only_a), len(only_b)), 6),
        fields=fields,
    )


def below(summary: Summary, thresholds: dict[str, float]) -> list[str]:
    """Each threshold the summary misses, said plainly. Keys: ``min_accuracy``,
    ``max_escalation_rate``, ``max_p95`` (seconds), ``max_failed``, ``min_<field>``."""
    misses = []
    for key, limit in thresholds.items():
        kind, _, name = key.partition("_")
        value = _metric(summary, name)
        if value is None:
            misses.append(f"{key}: no field {name!r} was scored (fields: {', '.join(summary.fields) or 'none'})")
        elif (kind == "min" and value < limit) or (kind == "max" and value > limit):
            misses.append(f"{summary.config}: {name} {value:g} is {'below' if kind == 'min' else 'above'} {limit:g}")
    return misses


def _metric(summary: Summary, name: str) -> float | None:
    known = {
        "accuracy": summary.accuracy,
        "escalation_rate": summary.escalation_rate,
        "p95": summary.latency_p95,
        "failed": float(summary.failed),
        "denials": float(summary.denials),
    }
    return known.get(name, summary.fields.get(name))


def table(summaries: Sequence[Summary]) -> Any:
    """A rich table: one column per configuration."""
    from rich.table import Table

    view = Table("metric", *(s.config for s in summaries), title="evaluation", title_justify="left")
    rows: list[tuple[str, list[str]]] = [
        ("cases", [str(s.cases) for s in summaries]),
        ("accuracy (all fields)", [f"{s.accuracy:.0%}" for s in summaries]),
    ]
    for name in sorted({f for s in summaries for f in s.fields}):
        rows.append((f"  {name}", [f"{s.fields[name]:.0%}" if name in s.fields else "—" for s in summaries]))
    for lang in sorted({k for s in summaries for k in s.by_lang}):
        rows.append((f"  lang {lang}", [f"{s.by_lang[lang]:.0%}" if lang in s.by_lang else "—" for s in summaries]))
    rows += [
        ("escalation rate", [f"{s.escalation_rate:.0%}" for s in summaries]),
        ("denials", [str(s.denials) for s in summaries]),
        ("failed runs", [str(s.failed) for s in summaries]),
        ("latency p50 / p95 (s)", [f"{s.latency_p50:.2f} / {s.latency_p95:.2f}" for s in summaries]),
        ("tokens per case", [f"{s.tokens_per_case:.0f}" for s in summaries]),
        ("cost per case", [f"{s.cost_per_case:.4f}" for s in summaries]),
    ]
    if any(s.differing for s in summaries):
        rows.append(("differ from recording", [str(s.differing) for s in summaries]))
    for name, values in rows:
        view.add_row(name, *values)
    return view


def chart(summaries: Sequence[Summary], path: Path) -> Path:
    """Per-field accuracy and p50/p95 latency, one bar per configuration, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")  # no display: write files only
    import matplotlib.pyplot as plt

    names = [*sorted({f for s in summaries for f in s.fields}), "all fields", "escalation"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5), gridspec_kw={"width_ratios": [3, 1]})
    width = 0.8 / max(1, len(summaries))
    for i, s in enumerate(summaries):
        values = [s.fields.get(n, 0.0) for n in names[:-2]] + [s.accuracy, s.escalation_rate]
        left.bar([x + i * width for x in range(len(names))], values, width, label=s.config)
        right.bar([x + i * width for x in range(2)], [s.latency_p50, s.latency_p95], width, label=s.config)
    left.set_xticks([x + width * (len(summaries) - 1) / 2 for x in range(len(names))], names, rotation=30, ha="right")
    left.set_ylim(0, 1.05)
    left.set_ylabel("share of cases")
    left.set_title("accuracy per field, escalation rate")
    right.set_xticks([x + width * (len(summaries) - 1) / 2 for x in range(2)], ["p50", "p95"])
    right.set_ylabel("seconds per case")
    right.set_title("latency")
    left.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
