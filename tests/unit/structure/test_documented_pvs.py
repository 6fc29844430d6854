"""One table of documented PVs (``devices/_pvs.py``): the IOCs serve it, the docs show it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from qd_bluesky.devices._pvs import DOCUMENTED_PVS, documented_pvs
from qd_bluesky.iocs import LaserIOC, PotentiostatIOC, StageIOC, TcspcIOC

HARDWARE_MD = Path(__file__).resolve().parents[3] / "docs" / "hardware.md"
IOC_CLASSES = {"pot": PotentiostatIOC, "tcspc": TcspcIOC, "laser": LaserIOC, "stage": StageIOC}


def test_each_pv_has_one_row():
    names = [(row.ioc, row.name) for row in DOCUMENTED_PVS]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("ioc", sorted(IOC_CLASSES))
def test_the_reference_iocs_serve_exactly_the_table(ioc, tmp_path):
    extra = {"data_dir": tmp_path} if ioc == "tcspc" else {}
    group = IOC_CLASSES[ioc](prefix="p:", backend=None, **extra)
    served = {name.removeprefix("p:"): pv for name, pv in group.pvdb.items()}
    rows = {row.name: row for row in documented_pvs(ioc)}
    assert set(served) == set(rows)
    for name, row in rows.items():
        assert row.kind in served[name].data_type.name or (
            row.kind == "LONG" and served[name].data_type.name == "INT"
        ), name
        if row.enum_strings:
            assert tuple(served[name].enum_strings) == row.enum_strings, name


def _doc_sections() -> dict[str, set[str]]:
    """PV names in the first column of each IOC's table in docs/hardware.md."""
    sections: dict[str, set[str]] = {}
    current = None
    for line in HARDWARE_MD.read_text().splitlines():
        heading = re.match(r"## .*`\{P\}(\w+):`", line)
        if heading:
            current = heading.group(1)
            sections[current] = set()
        elif line.startswith("## "):
            current = None
        elif current and line.startswith("| `"):
            first_cell = line.split("|")[1]
            # a motor record's fields (`.VAL`, ...) belong to the record, not to the table
            names = re.findall(r"`([^`]+)`", first_cell)
            sections[current].update(n for n in names if not n.startswith("."))
    return sections


def test_the_docs_tables_list_exactly_the_table():
    sections = _doc_sections()
    assert set(sections) == set(IOC_CLASSES)
    for ioc, names in sections.items():
        assert names == {row.name for row in documented_pvs(ioc)}, ioc
