"""The TCSPC flyer's stream documents, on a fake card (no IOC): which rows it announces."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from ophyd.sim import make_fake_device

from qd_bluesky.devices import IocLostError, TcspcCard

DATASETS = {
    "timestamps": ("photon_data/timestamps", np.int64),
    "nanotimes": ("photon_data/nanotimes", np.uint16),
    "detectors": ("photon_data/detectors", np.uint8),
}


@pytest.fixture
def card(tmp_path):
    card = make_fake_device(TcspcCard)("qd:tcspc:", name="tcspc")
    card.mode.sim_put("T3")
    card.chunk_rows.sim_put(4096)
    card.file_path.sim_put(str(tmp_path / "photons.h5"))
    card.kickoff().wait(1)
    return card


def photon_file(path, rows: int) -> None:
    with h5py.File(path, "w") as f:
        for dataset, dtype in DATASETS.values():
            f.create_dataset(dataset, data=np.arange(rows, dtype=dtype))


RESOURCES: dict[str, str] = {}


def announced(docs) -> dict[str, tuple[int, int]]:
    """Data key -> (start, stop) of the stream datums (resources from any earlier collect)."""
    RESOURCES.update((d["uid"], d["data_key"]) for name, d in docs if name == "stream_resource")
    return {
        RESOURCES[d["stream_resource"]]: (d["indices"]["start"], d["indices"]["stop"])
        for name, d in docs
        if name == "stream_datum"
    }


def test_each_collect_announces_the_new_rows_once(card):
    card.num_photons.sim_put(500)
    first = list(card.collect_asset_docs())
    assert [name for name, _ in first].count("stream_resource") == 3
    resource = next(d for name, d in first if name == "stream_resource")
    assert resource["parameters"] == {
        "dataset": "/photon_data/timestamps",
        "chunk_shape": (4096,),
        "swmr": True,
    }
    assert announced(first) == {f"tcspc_{field}": (0, 500) for field in DATASETS}
    card.num_photons.sim_put(800)
    second = list(card.collect_asset_docs(index=700))
    assert [name for name, _ in second] == ["stream_datum"] * 3
    assert set(announced(second).values()) == {(500, 700)}
    card.num_photons.sim_put(800)
    assert set(announced(list(card.collect_asset_docs())).values()) == {(700, 800)}
    assert list(card.collect_asset_docs()) == []


def test_a_lost_ioc_leaves_rows_that_the_file_announces(card, monkeypatch, tmp_path):
    card.num_photons.sim_put(500)
    announced(list(card.collect_asset_docs()))
    # The IOC dies after writing 900 rows; nothing answers for num_photons any more.
    photon_file(tmp_path / "photons.h5", 900)

    def dead(*args, **kwargs):
        raise TimeoutError("no answer")

    monkeypatch.setattr(card.num_photons, "get", dead)
    assert set(announced(list(card.collect_asset_docs())).values()) == {(500, 900)}
    # Nothing new in the file: the loss itself is the error.
    with pytest.raises(IocLostError, match="was lost during collect"):
        list(card.collect_asset_docs())


def test_a_lost_ioc_and_an_unreadable_file_are_both_named(card, monkeypatch, tmp_path):
    card.num_photons.sim_put(500)
    list(card.collect_asset_docs())
    (tmp_path / "photons.h5").write_bytes(b"not hdf5")

    def dead(*args, **kwargs):
        raise TimeoutError("no answer")

    monkeypatch.setattr(card.num_photons, "get", dead)
    with pytest.raises(IocLostError, match="the file cannot be read either") as info:
        list(card.collect_asset_docs())
    assert "\n" not in str(info.value)
