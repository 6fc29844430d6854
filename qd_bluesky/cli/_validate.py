"""``qd-bluesky validate FILE...``: photon files against docs/photon-file.md and Photon-HDF5."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "validate",
        help="check photon files against the photon-file contract and Photon-HDF5",
        description="Check Photon-HDF5 photon files against the contract of docs/photon-file.md "
        "(what the TCSPC IOC writes) and the Photon-HDF5 0.5 spec. Prints one line per problem "
        "and per notice (photons lost to FIFO overruns, a file not closed by its writer); exits "
        "with 1 if any file has a problem.",
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="Photon-HDF5 file(s)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..analysis import PhotonFileError, validate_photon_file

    results = []
    for name in args.files:
        try:
            v = validate_photon_file(name)
            results.append(
                {
                    "file": name,
                    "valid": v.valid,
                    "mode": v.mode,
                    "photons": v.photons,
                    "problems": v.problems,
                    "notices": v.notices,
                }
            )
        except PhotonFileError as exc:
            # Not a photon file at all: one problem, and the other files are still checked.
            results.append(
                {
                    "file": name,
                    "valid": False,
                    "mode": "",
                    "photons": 0,
                    "problems": [exc.problem],
                    "notices": [],
                }
            )
    if args.json:
        print(json.dumps({"files": results}))
    else:
        for r in results:
            for line in r["problems"]:
                print(f"{r['file']}: problem: {line}")
            for line in r["notices"]:
                print(f"{r['file']}: notice: {line}")
            if r["valid"]:
                print(f"{r['file']}: valid ({r['mode']}, {r['photons']} photons)")
    return 0 if all(r["valid"] for r in results) else 1
