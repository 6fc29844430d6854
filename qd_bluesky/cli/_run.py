"""``qd-bluesky run PLAN [--arg value ...]``: run one qd plan against the instrument.

The plan's own signature defines its options: ``qd-bluesky run cv-scan --help`` lists them.
Devices are not options: the plan's ``tcspc``, ``potentiostat`` and ``stage`` parameters are
filled with the instrument at ``--prefix``. Documents go to the catalog, with live analysis.
"""

from __future__ import annotations

import argparse
import inspect
import os
import sys
import types
import typing
from collections.abc import Callable, Sequence
from typing import Any, cast

#: Command-line name -> function in qd_bluesky.plans.
PLANS = {
    "bias-steps": "bias_steps",
    "cv-scan": "cv_scan",
    "g2-measurement": "g2_measurement",
    "raster-scan": "raster_scan",
    "find-dot": "find_dot",
    "find-dots": "find_dots",
    "bias-cycling": "bias_cycling",
    "bias-switching": "bias_switching",
}
#: Plan parameter -> attribute of the Instrument that fills it.
DEVICE_PARAMETERS = {"tcspc": "tcspc", "potentiostat": "pot", "stage": "stage"}
#: Parameters the command line does not offer (extra readables; md has --md).
SKIPPED = {"readables", "md"}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="run a qd plan against the instrument (simulated or real)",
        description="Run one qd plan against the instrument at --prefix, storing raw and "
        "analysed runs in the catalog. Plan options: qd-bluesky run PLAN --help.",
    )
    p.add_argument("plan", choices=sorted(PLANS), metavar="PLAN", help=", ".join(sorted(PLANS)))
    p.add_argument("plan_args", nargs=argparse.REMAINDER, help="the plan's options")
    p.set_defaults(func=run)


def _common_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("instrument and catalog")
    g.add_argument(
        "--prefix",
        default=os.environ.get("QD_BLUESKY_PREFIX", "qd:"),
        help="PV prefix of the instrument (default qd: or $QD_BLUESKY_PREFIX)",
    )
    g.add_argument(
        "--port",
        type=int,
        default=None,
        help="find the IOCs on 127.0.0.1 at this Channel Access port (as `qd-bluesky sim "
        "--port` serves them); default: EPICS_CA_ADDR_LIST",
    )
    g.add_argument(
        "--data-dir",
        default=None,
        help="data directory: photon files, RE.md and the embedded catalog "
        "(default $QD_BLUESKY_DATA, else the per-user one)",
    )
    g.add_argument("--catalog", default=None, metavar="URI", help="a Tiled server instead")
    g.add_argument("--connect-timeout", type=float, default=10.0, metavar="S")
    g.add_argument(
        "--md",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="metadata for the start document (repeatable)",
    )


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.replace(":", ",").split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected numbers separated by commas, not {text!r}"
        ) from None


def _pair(text: str) -> tuple[float, float]:
    values = _floats(text)
    if len(values) != 2:
        raise argparse.ArgumentTypeError(f"expected two numbers LOW,HIGH, not {text!r}")
    return (values[0], values[1])


def _converter(hint: Any) -> tuple[Callable[[str], Any] | None, str]:
    """argparse type and metavar for a plan parameter's type hint (None: a flag)."""
    origin = typing.get_origin(hint)
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if origin in (typing.Union, types.UnionType) and args:
        return _converter(args[0])
    if hint is bool:
        return None, ""
    if hint is int:
        return int, "N"
    if hint is float:
        return float, "X"
    if origin is tuple and len(args) == 2:
        return _pair, "LOW,HIGH"
    if origin in (list, tuple, Sequence, typing.Sequence) or str(origin).endswith("Sequence'>"):
        return _floats, "X,Y,..."
    return str, "VALUE"


def _parameter_help(doc: str) -> dict[str, str]:
    """First sentence of each parameter's description in a numpydoc docstring."""
    out: dict[str, str] = {}
    lines = doc.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "Parameters") + 2
    except StopIteration:
        return out
    name = None
    for line in lines[start:]:
        if line and not line.startswith(" "):
            if line.strip() and set(line.strip()) == {"-"}:  # the next section's underline
                break
            name = line.split(":")[0].strip()
            for part in name.split(","):
                out.setdefault(part.strip(), "")
        elif name and line.strip():
            for part in name.split(","):
                key = part.strip()
                if not out[key].endswith("."):
                    out[key] = (out[key] + " " + line.strip()).strip()
    return {k: v.split(". ")[0].rstrip(".") for k, v in out.items()}


def plan_parser(plan_name: str, plan: Callable) -> tuple[argparse.ArgumentParser, list[str]]:
    """A parser of ``plan``'s options, and the names of the device parameters it needs."""
    doc = inspect.getdoc(plan) or ""
    parser = argparse.ArgumentParser(
        prog=f"qd-bluesky run {plan_name}",
        description=doc.split("\n\n")[0],
    )
    hints = typing.get_type_hints(plan)
    helps = _parameter_help(doc)
    devices = []
    for name, param in inspect.signature(plan).parameters.items():
        if name in DEVICE_PARAMETERS:
            devices.append(name)
            continue
        if name in SKIPPED:
            continue
        convert, metavar = _converter(hints.get(name, str))
        option = "--" + name.replace("_", "-")
        required = param.default is inspect.Parameter.empty
        if convert is None:
            parser.add_argument(
                option,
                dest=name,
                action=argparse.BooleanOptionalAction,
                default=param.default if not required else False,
                help=helps.get(name),
            )
        else:
            parser.add_argument(
                option,
                dest=name,
                type=convert,
                metavar=metavar,
                required=required,
                default=None if required else param.default,
                help=helps.get(name, "") + ("" if required else " (default: %(default)s)"),
            )
    _common_options(parser)
    return parser, devices


def _metadata(items: Sequence[str]) -> dict[str, str]:
    md = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--md takes KEY=VALUE, not {item!r}")
        md[key] = value
    return md


def run(args: argparse.Namespace) -> int:
    from .. import plans

    plan = getattr(plans, PLANS[args.plan])
    parser, device_params = plan_parser(args.plan, plan)
    options = vars(parser.parse_args(args.plan_args))
    common = {
        k: options.pop(k)
        for k in ("prefix", "port", "data_dir", "catalog", "connect_timeout", "md")
    }
    md = _metadata(common["md"])

    from .._session import open_session
    from ..devices import disconnect_channel_access

    try:
        with open_session(
            prefix=common["prefix"],
            port=common["port"],
            data_dir=common["data_dir"],
            catalog_uri=common["catalog"],
            require_instrument=True,
            connect_timeout=common["connect_timeout"],
            interactive=False,
        ) as session:
            kwargs = {
                name: getattr(session.instrument, DEVICE_PARAMETERS[name]) for name in device_params
            }
            kwargs.update(options)
            if md:
                kwargs["md"] = md
            # a tuple of run uids (the session's RunEngine does not return results)
            uids = cast(tuple[str, ...], session.RE(plan(**kwargs)))
            session.wait_for_analysis()
            for uid in uids:
                outcome = session.analyzer.outcomes.get(uid)
                line = f"raw run {uid} (scan {session.RE.md.get('scan_id')})"
                if outcome is not None:
                    line += f"; derived run {outcome.derived_uid} ({outcome.exit_status})"
                print(line)
    finally:
        disconnect_channel_access()
    sys.stdout.flush()
    return 0
