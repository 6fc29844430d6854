"""Reports of analysed runs: PNG figures, ``summary.json`` and a Markdown table."""

from ._load import DERIVED_STREAMS, DerivedData, derived_from_documents, derived_from_run
from ._report import Report, write_report
from ._summary import summarize, summary_markdown
from ._survey import class_counts, dot_class, write_survey_report

__all__ = [
    "DERIVED_STREAMS",
    "DerivedData",
    "Report",
    "class_counts",
    "dot_class",
    "write_survey_report",
    "derived_from_documents",
    "derived_from_run",
    "summarize",
    "summary_markdown",
    "write_report",
]
