"""The Sepia II backend on the fake library, and the power calibration (no IOC, no CA)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from qd_bluesky.iocs import BackendFault
from qd_bluesky.iocs._power_calibration import (
    SIMULATED_CALIBRATION,
    PowerCalibration,
    load_power_calibration,
)
from qd_bluesky.iocs._sepia2 import Sepia2Laser, load_sepia2_library, parse_rate_hz
from qd_bluesky.iocs._sepia2_fake import OBJECT_SCM, FakeSepia2Lib

CALIBRATION = PowerCalibration((0, 400, 600, 1000), (0.0, 0.0, 2e-8, 3e-7))


def test_calibration_interpolates_and_inverts_to_the_nearest_permille():
    # 30 nW lies on the 600..1000 segment: 20 nW + (k - 600) * 0.7 nW per mille.
    k = CALIBRATION.permille_for(30e-9)
    assert k == 600 + round(10 / 0.7)
    assert CALIBRATION.power_at(k) == pytest.approx(2e-8 + (k - 600) * 0.7e-9)
    # Every whole per mille round-trips, and the inverse is the nearest one.
    for permille in range(400, 1001, 37):
        power = CALIBRATION.power_at(permille)
        found = CALIBRATION.permille_for(power)
        assert CALIBRATION.power_at(found) == pytest.approx(power, abs=1e-15)
    with pytest.raises(ValueError, match=r"outside the calibrated range 0\.\.3e-07 W"):
        CALIBRATION.permille_for(1e-6)


@pytest.mark.parametrize(
    ("points", "message"),
    [
        (((0, 0.0),), "at least two"),
        (((0, 0.0), (1200, 1e-7)), "rise strictly in 0..1000"),
        (((500, 0.0), (400, 1e-7)), "rise strictly"),
        (((0, 2e-7), (1000, 1e-7)), "never fall"),
        (((0, 0.0), (1000, float("nan"))), "finite"),
    ],
)
def test_calibration_rules(points, message):
    permille, power = zip(*points, strict=True)
    with pytest.raises(ValueError, match=message):
        PowerCalibration(permille, power)


def test_calibration_files_csv_and_json(tmp_path):
    csv_file = tmp_path / "cal.csv"
    csv_file.write_text(
        "# Sepia II + LDH-D-C-440, ND 3, sample plane\n"
        "intensity_permille,power_w\n0,0\n400,0\n600,2e-8\n1000,3e-7\n"
    )
    json_file = tmp_path / "cal.json"
    json_file.write_text(
        json.dumps({"comment": "same", "points": [[0, 0], [400, 0], [600, 2e-8], [1000, 3e-7]]})
    )
    for path in (csv_file, json_file):
        loaded = load_power_calibration(path)
        assert loaded.permille == CALIBRATION.permille
        assert loaded.power_w == CALIBRATION.power_w
    assert "LDH-D-C-440" in load_power_calibration(csv_file).description
    bad = tmp_path / "bad.csv"
    bad.write_text("permille;watt\n0;0\n")
    with pytest.raises(ValueError, match=r"bad\.csv: the first row must be the header"):
        load_power_calibration(bad)
    with pytest.raises(ValueError, match="cannot read the power calibration"):
        load_power_calibration(tmp_path / "missing.csv")


def test_simulated_calibration_covers_the_power_pv():
    assert SIMULATED_CALIBRATION.power_range_w == (0.0, 1e-3)
    assert np.all(np.diff(SIMULATED_CALIBRATION.power_w) >= 0)


def test_rate_texts():
    assert parse_rate_hz("80 MHz") == 80e6
    assert parse_rate_hz("2.5 MHz") == 2.5e6
    assert parse_rate_hz("500 kHz") == 500e3
    assert parse_rate_hz("ext. trig., rising edge") is None


@pytest.fixture
def fake():
    return FakeSepia2Lib()


@pytest.fixture
def laser(fake):
    return Sepia2Laser(fake, CALIBRATION)


def test_open_reads_the_module_map_and_the_frequency_list(fake, laser):
    assert laser.rep_rates_hz == (80e6, 40e6, 20e6, 10e6, 5e6, 2.5e6)
    assert (laser.scm.value, laser.slm.value) == (0, 200)
    assert laser.description == "Sepia II 1020304"
    assert fake.calls[:2] == ["SEPIA2_USB_OpenDevice", "SEPIA2_FWR_GetModuleMap"]


def test_set_output_reaches_the_modules(fake, laser):
    laser.set_output(emission=True, power_w=30e-9, rep_rate_hz=40e6)
    assert fake.intensity_permille == CALIBRATION.permille_for(30e-9) == laser.intensity_permille
    assert fake.freq_index == 1  # 40 MHz
    assert not fake.soft_locked and fake.emitting
    laser.set_output(emission=False, power_w=30e-9, rep_rate_hz=2.5e6)
    assert fake.soft_locked and not fake.emitting and fake.freq_index == 5
    with pytest.raises(ValueError, match="3e\\+07 Hz is not one of the laser's repetition rates"):
        laser.set_output(emission=False, power_w=30e-9, rep_rate_hz=30e6)
    with pytest.raises(ValueError, match="outside the calibrated range"):
        laser.set_output(emission=False, power_w=1e-3, rep_rate_hz=2.5e6)


def test_locks_are_told_apart(fake, laser):
    laser.set_output(emission=True, power_w=0.0, rep_rate_hz=2.5e6)
    assert laser.read_locks() == (False, "none", False)
    fake.turn_key(locked=True)
    assert laser.read_locks() == (True, "key", False)
    fake.turn_key(locked=False)
    fake.fail_power(failed=True)
    assert laser.read_locks() == (True, "power failure", False)
    fake.fail_power(failed=False)
    assert laser.read_locks() == (False, "none", False)
    # With the soft lock set, "locked" says nothing of the key: the last state stays.
    laser.set_output(emission=False, power_w=0.0, rep_rate_hz=2.5e6)
    assert laser.read_locks() == (False, "none", True)


def test_emission_refused_under_the_key_leaves_the_laser_locked(fake, laser):
    fake.turn_key(locked=True)
    with pytest.raises(ValueError, match="locked by its key: the interlock is open"):
        laser.set_output(emission=True, power_w=0.0, rep_rate_hz=2.5e6)
    assert fake.soft_locked and not fake.emitting
    with pytest.raises(ValueError, match="interlock is an input"):
        laser.set_interlock(False)


def test_library_errors_become_one_line_faults(fake, laser):
    fake.inject_error("SEPIA2_SLM_SetIntensityFineStep", -6002)
    with pytest.raises(BackendFault) as info:
        laser.set_output(emission=False, power_w=30e-9, rep_rate_hz=2.5e6)
    assert str(info.value) == (
        "SEPIA2_SLM_SetIntensityFineStep failed: SLM: illegal intensity (> 100% or < 0%) (-6002)"
    )


def test_a_sepia_without_a_laser_module_is_refused():
    with pytest.raises(ValueError, match="has no SLM 828"):
        Sepia2Laser(FakeSepia2Lib(slots={0: OBJECT_SCM}), CALIBRATION)


def test_the_library_is_loaded_by_name_with_a_one_line_error():
    assert isinstance(load_sepia2_library("fake"), FakeSepia2Lib)
    with pytest.raises(ValueError, match="cannot load the Sepia II library /no/libsepia2.so"):
        load_sepia2_library("/no/libsepia2.so")
