"""Errors of the catalog layer. Their message is one line that names the problem."""

from __future__ import annotations

from .._errors import QdBlueskyError


class CatalogError(QdBlueskyError):
    """The catalog cannot be opened or cannot answer: missing, unreachable, unknown run."""
