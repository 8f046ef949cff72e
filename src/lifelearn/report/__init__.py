"""Study reports: load run results, judge paper claims, draw figures, write the markdown."""
from lifelearn.report.claims import evaluate_claim, evaluate_claims
from lifelearn.report.results import load_histories, load_results
from lifelearn.report.writer import write_report

__all__ = [
    "evaluate_claim",
    "evaluate_claims",
    "load_histories",
    "load_results",
    "write_report",
]
