"""``qd-bluesky sim``: the simulated instrument (four IOCs, one sample) on loopback."""

from __future__ import annotations

import argparse
import os
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sim",
        help="serve the simulated instrument (potentiostat, TCSPC card, laser, stage) on loopback",
        description=(
            "Serve the four simulated IOCs on one simulated sample, on 127.0.0.1 only, in the "
            "foreground; Ctrl-C (or SIGTERM) stops them and closes an open photon file intact. "
            "Clients reach them with EPICS_CA_ADDR_LIST=127.0.0.1 EPICS_CA_AUTO_ADDR_LIST=NO "
            "and EPICS_CA_SERVER_PORT set to --port."
        ),
    )
    parser.add_argument("--prefix", default="qd:", help="PV prefix of the instrument (qd:)")
    parser.add_argument(
        "--port",
        type=int,
        default=None,
        help="CA server port (sets EPICS_CA_SERVER_PORT; the repeater uses PORT+1)",
    )
    parser.add_argument("--preset", default="qd1", help="dot preset of the sample (qd1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the simulated sample (0)")
    add_field_options(parser)
    # As iocs._server.add_data_dir_options (not imported here: it would load caproto for
    # every command).
    parser.add_argument(
        "--data-dir",
        default=None,
        help="data directory, the same as the catalog's: photon files go to DATA_DIR/photons/ "
        "(default: $QD_BLUESKY_DATA, else the per-user data directory)",
    )
    parser.add_argument("--photon-dir", default=None, help=argparse.SUPPRESS)
    parser.add_argument(
        "--list-pvs", action="store_true", help="print the PV names at start-up (as caproto's)"
    )
    add_trigger_options(parser)
    parser.set_defaults(func=run)


def add_trigger_options(parser: argparse.ArgumentParser) -> None:
    """The cell's response and the potentiostat's trigger wiring (docs/hardware.md)."""
    parser.add_argument(
        "--rise-time",
        type=float,
        default=2e-6,
        metavar="S",
        help="10-90 %% rise time of the bias at the dot after a step (s; 2e-6, the paper's)",
    )
    parser.add_argument(
        "--trigger-channel",
        type=int,
        default=1,
        metavar="N",
        help="TCSPC marker input (1-4) the potentiostat's trigger output is wired to (1)",
    )
    parser.add_argument(
        "--card-blind",
        action="store_true",
        help="the TCSPC card does not see the bias, as a real card: no /user/bias in its files, "
        "only the trigger's marker records",
    )


def add_field_options(parser: argparse.ArgumentParser) -> None:
    """``--field N`` and ``--area UM``: the survey's field instead of the preset's."""
    parser.add_argument(
        "--field",
        type=int,
        default=None,
        metavar="N",
        help="a survey field of N sites drawn from the documented population (docs/physics.md) "
        "instead of the preset dot in its field (default)",
    )
    parser.add_argument(
        "--area",
        type=float,
        default=None,
        metavar="UM",
        help="side of the --field square (um; default: grows with N)",
    )


def field_area(field: int | None, area: float | None) -> float | None:
    """The checked side of the field (um), its default for ``field`` sites; None without one."""
    if field is None:
        if area is not None:
            raise ValueError("--area needs --field")
        return None
    if not 1 <= field <= 31:
        raise ValueError(f"--field must be in 1..31 sites, not {field}")
    if area is None:
        from qd_bluesky.sim import default_area_um

        return default_area_um(field)
    if not 2.0 <= area <= 100.0:
        raise ValueError(f"--area must be in 2..100 um, not {area:g}")
    return float(area)


def run(args: argparse.Namespace) -> int:
    if args.port is not None and not 1024 <= args.port <= 65534:
        raise ValueError(f"--port must be in 1024..65534, not {args.port}")
    if not args.prefix:
        raise ValueError("--prefix must not be empty")
    # The environment must be in place before caproto reads it (at server start).
    from qd_bluesky.iocs import SimulatedInstrument, loopback_environment, serve
    from qd_bluesky.iocs._server import photon_dir_of

    area = field_area(args.field, args.area)
    os.environ.update(loopback_environment(args.port))
    data_dir = photon_dir_of(args.data_dir, args.photon_dir)
    instrument = SimulatedInstrument(
        args.prefix,
        preset=args.preset,
        seed=args.seed,
        data_dir=data_dir,
        field=args.field,
        area_um=area,
        rise_time_s=args.rise_time,
        trigger_channel=args.trigger_channel,
        card_sees_bias=not args.card_blind,
    )
    port = os.environ.get("EPICS_CA_SERVER_PORT", "5064")

    sample = f"preset {args.preset}" if area is None else f"field of {args.field}, {area:g} um"

    def banner() -> None:
        if args.list_pvs:
            names = [name for group in instrument.groups for name in group.pvdb]
            print("\n".join(["PVs served:", *(f"    {name}" for name in names)]), flush=True)
        print(
            f"qd-bluesky sim: serving {args.prefix}pot: tcspc: laser: stage: on 127.0.0.1:{port} "
            f"({sample}, seed {args.seed}); photon files in {data_dir}\n"
            f"  clients: EPICS_CA_ADDR_LIST=127.0.0.1 EPICS_CA_AUTO_ADDR_LIST=NO "
            f"EPICS_CA_SERVER_PORT={port}\n"
            "  Ctrl-C to stop",
            flush=True,
        )

    serve(instrument.groups, interfaces=["127.0.0.1"], on_ready=banner)
    print("qd-bluesky sim: stopped", file=sys.stderr, flush=True)
    return 0
