"""``chamberlain eval``: run cases through the real workflow and measure what the runs did.

:mod:`.cases` reads case files and scores an :class:`Outcome` against a case; :mod:`.runner`
runs cases on Temporal behind the gate, over fresh stores, with tools live, recorded or
replayed; :mod:`.report` turns results into metrics, comparisons, thresholds and a chart.
"""

from chamberlain.workflows.evaluation.cases import Approval, Case, CaseFileError, Outcome, load_cases, score
from chamberlain.workflows.evaluation.report import (
    CaseResult,
    Comparison,
    Summary,
    below,
    chart,
    compare,
    mcnemar_exact,
    results,
    summarize,
    table,
)
from chamberlain.workflows.evaluation.runner import Subject, Tape, evaluate, sqlite_store

__all__ = [
    "Approval",
    "Case",
    "CaseFileError",
    "CaseResult",
    "Comparison",
    "Outcome",
    "Subject",
    "Summary",
    "Tape",
    "below",
    "chart",
    "compare",
    "evaluate",
    "load_cases",
    "mcnemar_exact",
    "results",
    "score",
    "sqlite_store",
    "summarize",
    "table",
]
