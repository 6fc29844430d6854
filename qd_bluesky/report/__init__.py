"""Reports of analysed runs: PNG figures, ``summary.json`` and a Markdown table."""

from ._load import DERIVED_STREAMS, DerivedData, derived_from_documents, derived_from_run
from ._report import Report, write_report
from ._summary import summarize, summary_markdown

__all__ = [
    "DERIVED_STREAMS",
    "DerivedData",
    "Report",
    "derived_from_documents",
    "derived_from_run",
    "summarize",
    "summary_markdown",
    "write_report",
]
