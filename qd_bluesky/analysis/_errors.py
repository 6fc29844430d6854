"""Exceptions of the analysis layer. Their message is one line that names the problem."""

from .._errors import QdBlueskyError


class PhotonFileError(QdBlueskyError):
    """A photon file cannot be read: missing, empty, corrupt, or not a photon file."""

    def __init__(self, path: object, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class AnalysisError(QdBlueskyError):
    """The data cannot answer the question asked (e.g. a lifetime from a T2 file)."""
