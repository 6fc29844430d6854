"""The ``qd-bluesky`` command.

Each sub-command lives in its own private module that defines ``register(subparsers)``; the
parser it adds sets ``func`` to a callable taking the parsed arguments and returning an exit code.
Errors meant for the user (:class:`~qd_bluesky.analysis.QdBlueskyError`, ``ValueError`` from
argument checks, missing files) end the command with one line on stderr and a non-zero exit;
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

# Sub-command modules, imported lazily so that `qd-bluesky analyze` does not pay for EPICS/Tiled.
_COMMANDS = {
    "analyze": "._analyze",
    "simulate": "._simulate",
    "sim": "._sim",
    "run": "._run",
    "demo": "._demo",
    "survey": "._survey",
    "report": "._report",
    "ipython-profile": "._profile",
    "runs": "._runs",
    "replay": "._replay",
    "reanalyze": "._reanalyze",
    "queueserver": "._queueserver",
    "serve-catalog": "._serve",
    "validate": "._validate",
    "check-instrument": "._check",
}

EXIT_USAGE = 2
EXIT_ERROR = 1


def _build_parser() -> tuple[argparse.ArgumentParser, dict[str, str]]:
    parser = argparse.ArgumentParser(
        prog="qd-bluesky",
        description="Single-quantum-dot spectroscopy under electrochemical bias, with Bluesky.",
    )
    parser.add_argument(
        "--debug", action="store_true", help="show full tracebacks and debug logging"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    missing = {}
    for name, module in _COMMANDS.items():
        try:
            mod = importlib.import_module(module, __name__)
        except ModuleNotFoundError as exc:
            # A sub-command whose module is not there yet must not break the others.
            if exc.name and exc.name.startswith(__name__):
                missing[name] = module
                continue
            raise
        mod.register(sub)
    return parser, missing


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``qd-bluesky`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    handler = logging.StreamHandler()
    handler.setFormatter(
        (logging.Formatter if debug else _OneLineFormatter)(
            "qd-bluesky: %(levelname)s: %(message)s"
        )
    )
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, handlers=[handler])
    if not debug:
        # The RunEngine logs a failed run's traceback itself; the error reaches the user once,
        # as one line, through the exception the RunEngine raises.
        logging.getLogger("bluesky").setLevel(logging.CRITICAL)
    parser, _ = _build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("qd-bluesky: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # noqa: BLE001 - the one place that turns errors into one line
        if debug:
            raise
        print(f"qd-bluesky: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_ERROR


class _OneLineFormatter(logging.Formatter):
    """Log records as one line each: an exception's traceback becomes its one-line text.

    Libraries log failures with tracebacks (Tiled's retries, a callback's error); without
    ``--debug`` the user sees what failed, not where inside the library.
    """

    def formatException(self, ei) -> str:  # noqa: N802 - logging's name
        return _one_line(ei[1]) if ei and ei[1] is not None else ""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return " ".join(text.split("\n"))


def _one_line(exc: BaseException) -> str:
    from .._errors import QdBlueskyError

    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, (QdBlueskyError, ValueError, OSError)):
        return text
    return f"{type(exc).__name__}: {text} (run with --debug for the traceback)"
