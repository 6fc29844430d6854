"""A PalmSens EmStat (EmStat4, EmStat Pico) as a :class:`~._backends.PotentiostatBackend`.

It speaks MethodSCRIPT over the instrument's serial port (pyserial): every operation is a
short script (``e``, the script's lines, an empty line) whose data packages carry the applied
potential (``da``) and the WE current (``ba``, with its current range as metadata).

- static bias: ``set_e`` + ``cell_on`` + a one-point ``meas_loop_ca`` (the current at the new
  bias); the IOC's ramp calls it at every tick;
- CV: the instrument sweeps itself and streams (E, I) at every step (:class:`StreamingCv`):
  ``meas_loop_cv ... nscans(N)`` for start = end without trigger pulses, otherwise one
  ``meas_loop_lsv`` per leg so that a trigger pulse can start each leg;
- abort: ``Z``; the instrument leaves the last potential applied;
- current range (``set_range ba``) and autorange (``set_autoranging ba min max``);
- compliance: the largest |E| the driver applies, inside the model's range and sent as
  ``set_range_minmax da`` so the instrument's potential range fits it;
- trigger output: GPIO 0 (``set_gpio_cfg 0x1 1``), a 1 ms pulse (``set_gpio 1i``,
  ``wait 1m``, ``set_gpio 0i``) at each bias step and before each CV leg. Trigger times are
  this host's clock when the pulse's script reached the instrument (serial latency, ~ms);
  the TCSPC card's marker input records the edge itself.

iR compensation is not offered by MethodSCRIPT on these models: its setters raise
:class:`~._backends.NotSupportedError`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ._backends import BackendFault, NotSupportedError
from ._methodscript import (
    SET_POTENTIAL,
    WE_CURRENT,
    MethodScriptError,
    format_number,
    parse_package,
)

#: Current ranges (MethodSCRIPT index -> full scale, A) and potential limit (V) per model,
#: keyed by the start of the firmware string (``t`` command).
MODELS: dict[str, tuple[str, dict[int, float], float]] = {
    "es4_lr": (
        "EmStat4 LR",
        {3: 1e-9, 6: 1e-8, 9: 1e-7, 12: 1e-6, 15: 1e-5, 18: 1e-4, 21: 1e-3, 24: 1e-2},
        3.0,
    ),
    "es4_hr": (
        "EmStat4 HR",
        {9: 1e-7, 12: 1e-6, 15: 1e-5, 18: 1e-4, 21: 1e-3, 24: 1e-2, 27: 1e-1},
        6.0,
    ),
    "espico": (
        "EmStat Pico",
        {
            0: 100e-9,
            1: 2e-6,
            2: 4e-6,
            3: 8e-6,
            4: 16e-6,
            5: 32e-6,
            6: 63e-6,
            7: 125e-6,
            8: 250e-6,
            9: 500e-6,
            10: 1e-3,
            11: 5e-3,
        },
        # The Pico's range is -1.7 .. +2 V; symmetric here (the driver's compliance).
        1.7,
    ),
}
#: Seconds the instrument may take to answer a short script.
SCRIPT_TIMEOUT_S = 2.0
#: Sweep steps: at most this many points per second (and at least 1 mV steps).
MAX_POINT_RATE_HZ = 50.0


class EmStatPotentiostat:
    """An EmStat over MethodSCRIPT on ``port`` (see the module doc).

    Parameters
    ----------
    port
        Serial device, e.g. ``/dev/ttyACM0`` (or the emulator's pseudo-terminal).
    baudrate
        230400 for the EmStat4 and the Pico's USB port.
    timeout_s
        Seconds the instrument may take to answer a short script (or the ``t`` command).
    open_serial
        ``open_serial(port, baudrate, timeout) -> serial object`` (default pyserial's
        ``Serial``); the object needs ``write``, ``readline``, ``read``, ``in_waiting``,
        ``close``.

    Raises
    ------
    BackendFault
        No MethodSCRIPT instrument answers on ``port`` (or it is an unknown model).
    OSError
        The port cannot be opened.
    """

    def __init__(
        self,
        port: str,
        *,
        baudrate: int = 230400,
        timeout_s: float = SCRIPT_TIMEOUT_S,
        open_serial: Callable[..., Any] | None = None,
    ) -> None:
        self.port = port
        self.timeout_s = float(timeout_s)
        self._serial = (open_serial or _open_pyserial)(port, baudrate, 0.05)
        self._buffer = b""
        self._streaming = False
        self._stream_points: list[tuple[float, float]] = []
        self._stream_done = False
        self._pulses: list[float] = []
        self._legs_left = 0
        self.firmware = self._identify()
        key = next((k for k in MODELS if self.firmware.startswith(k)), None)
        if key is None:
            self.close()
            raise BackendFault(f"{port}: unknown MethodSCRIPT instrument {self.firmware!r}")
        self.model, self._ranges, self._max_v = MODELS[key]
        self.current_ranges_a = tuple(sorted(self._ranges.values()))
        self.current_range_a = 1e-6 if 1e-6 in self.current_ranges_a else self.current_ranges_a[0]
        self.autorange = True
        self.trigger_output_enabled = False
        self._compliance_v = self._max_v
        self._bias_v = 0.0
        self._current_a = 0.0
        self._cell_on = False

    # -- the wire -------------------------------------------------------------------------

    def close(self) -> None:
        try:
            self._serial.close()
        except OSError:
            pass

    def _write(self, text: str) -> None:
        self._serial.write(text.encode("ascii"))

    def _readline(self, deadline: float) -> str:
        while b"\n" not in self._buffer:
            if time.monotonic() > deadline:
                raise BackendFault(f"{self.port}: the instrument did not answer in time")
            self._buffer += self._serial.read(max(1, self._serial.in_waiting))
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode("ascii", errors="replace").rstrip("\r")

    def _lines_ready(self) -> list[str]:
        """The complete lines received so far (never waits)."""
        waiting = self._serial.in_waiting
        if waiting:
            self._buffer += self._serial.read(waiting)
        *lines, self._buffer = self._buffer.split(b"\n")
        return [ln.decode("ascii", errors="replace").rstrip("\r") for ln in lines]

    def _identify(self) -> str:
        self._write("\n")  # flush a half-sent command
        time.sleep(0.05)
        self._serial.read(max(0, self._serial.in_waiting))
        self._write("t\n")
        deadline = time.monotonic() + self.timeout_s
        try:
            first = self._readline(deadline)
            second = first
            while not second.endswith("*"):
                second = self._readline(deadline)
        except BackendFault:
            self.close()
            raise BackendFault(f"{self.port}: no MethodSCRIPT instrument answers") from None
        if not first.startswith("t"):
            self.close()
            raise BackendFault(f"{self.port}: unexpected answer {first!r} to 't'")
        return first[1:]

    def _send_script(self, lines: list[str]) -> None:
        if self._streaming:
            raise BackendFault("a CV scan is running on the instrument")
        self._write("e\n" + "".join(f"{ln}\n" for ln in lines) + "\n")

    def _run(self, lines: list[str]) -> list:
        """Run a short script; return its data packages (a ``!`` answer is a fault)."""
        self._send_script(lines)
        deadline = time.monotonic() + self.timeout_s
        packages = []
        while True:
            line = self._readline(deadline)
            if line == "":
                return packages
            self._take(line, packages)

    def _take(self, line: str, packages: list) -> None:
        if line.startswith("Z"):  # the answer to an abort, read by abort() or stale
            return
        if "!" in line[:2]:
            raise BackendFault(f"{self.port}: the instrument refused the script ({line})")
        if line.startswith("P"):
            try:
                packages.append(parse_package(line))
            except MethodScriptError as exc:
                raise BackendFault(f"{self.port}: {exc}") from None

    def _setup(self) -> list[str]:
        """The first lines of every script: variables, ranges, potential range."""
        full_scale = format_number(self.current_range_a)
        lines = [
            "var p",
            "var c",
            "set_pgstat_chan 0",
            "set_pgstat_mode 2",
            f"set_range_minmax da {format_number(-self._compliance_v)} "
            f"{format_number(self._compliance_v)}",
            f"set_range ba {full_scale}",
        ]
        if self.autorange:
            low, high = self.current_ranges_a[0], self.current_ranges_a[-1]
            lines.append(f"set_autoranging ba {format_number(low)} {format_number(high)}")
        else:
            lines.append(f"set_autoranging ba {full_scale} {full_scale}")
        if self.trigger_output_enabled:
            lines.append("set_gpio_cfg 0x1 1")
        return lines

    def _read_package(self, package) -> tuple[float, float]:
        bias, current = package[SET_POTENTIAL], package[WE_CURRENT]
        if current.current_range is not None and current.current_range in self._ranges:
            self.current_range_a = self._ranges[current.current_range]
        return bias.value, current.value

    # -- PotentiostatBackend ----------------------------------------------------------------

    @property
    def hardware_range_v(self) -> tuple[float, float]:
        return (-self._compliance_v, self._compliance_v)

    @property
    def bias_v(self) -> float:
        return self._bias_v

    @property
    def current_a(self) -> float:
        return self._current_a

    @property
    def cell_is_on(self) -> bool:
        """Whether the cell is connected (off at start-up: the first bias put switches it on)."""
        return self._cell_on

    def apply_bias(self, bias_v: float, *, dbias_dt_v_per_s: float = 0.0) -> None:
        if abs(bias_v) > self._compliance_v:
            raise BackendFault(f"{bias_v:+.3f} V is beyond the compliance +-{self._compliance_v} V")
        self._measure_at(bias_v, cell_on=True)
        self._cell_on = True

    def read_current(self) -> float:
        if self._cell_on:  # with the cell off no current flows: nothing to ask
            self._measure_at(self._bias_v, cell_on=False)
        return self._current_a

    def _measure_at(self, bias_v: float, *, cell_on: bool) -> None:
        e = format_number(bias_v)
        lines = [*self._setup(), f"set_e {e}"]
        if cell_on:
            lines.append("cell_on")
        lines += [
            f"meas_loop_ca p c {e} 1m 1m",
            "pck_start",
            "pck_add p",
            "pck_add c",
            "pck_end",
            "endloop",
        ]
        packages = self._run(lines)
        if not packages:
            raise BackendFault(f"{self.port}: no data package for the bias {bias_v:+.3f} V")
        self._bias_v, self._current_a = self._read_package(packages[-1])

    # -- PotentiostatSettings ---------------------------------------------------------------

    @property
    def compliance_v(self) -> float:
        return self._compliance_v

    @compliance_v.setter
    def compliance_v(self, value: float) -> None:
        if not 0 < float(value) <= self._max_v:
            raise ValueError(f"the {self.model} applies at most +-{self._max_v:g} V")
        self._compliance_v = float(value)

    @property
    def ir_compensation_ohm(self) -> float:
        return 0.0

    @ir_compensation_ohm.setter
    def ir_compensation_ohm(self, value: float) -> None:
        raise NotSupportedError(f"the {self.model} has no iR compensation in MethodSCRIPT")

    @property
    def ir_compensation_on(self) -> bool:
        return False

    @ir_compensation_on.setter
    def ir_compensation_on(self, value: bool) -> None:
        raise NotSupportedError(f"the {self.model} has no iR compensation in MethodSCRIPT")

    def set_cell(self, on: bool) -> None:
        self._run([*self._setup(), f"set_e {format_number(self._bias_v)}", "cell_on"])
        if not on:
            self._run(["cell_off"])
        self._cell_on = bool(on)
        if not on:
            self._current_a = 0.0

    def emit_trigger(self) -> None:
        if self.trigger_output_enabled:
            self._run([*self._setup(), *_pulse()])
            self._pulses.append(time.monotonic())

    def drain_trigger_times(self) -> list[float]:
        pulses, self._pulses = self._pulses, []
        return pulses

    # -- StreamingCv ------------------------------------------------------------------------

    def start_cv(
        self, start_v: float, vertex_v: float, end_v: float, rate_v_per_s: float, cycles: int
    ) -> None:
        for v in (start_v, vertex_v, end_v):
            if abs(v) > self._compliance_v:
                raise BackendFault(f"{v:+.3f} V is beyond the compliance +-{self._compliance_v} V")
        step = max(1e-3, round(rate_v_per_s / MAX_POINT_RATE_HZ, 3))
        f = format_number
        rate, step_s = f(round(rate_v_per_s, 6)), f(step)
        package = ["pck_start", "pck_add p", "pck_add c", "pck_end", "endloop"]
        lines = [*self._setup(), f"set_e {f(start_v)}", "cell_on"]
        if end_v == start_v and not self.trigger_output_enabled:
            lines.append(
                f"meas_loop_cv p c {f(start_v)} {f(vertex_v)} {f(start_v)} {step_s} {rate} "
                f"nscans({int(cycles)})"
            )
            lines += package
        else:
            for _ in range(int(cycles)):
                for a, b in ((start_v, vertex_v), (vertex_v, end_v)):
                    if self.trigger_output_enabled:
                        lines += _pulse()
                    lines.append(f"meas_loop_lsv p c {f(a)} {f(b)} {step_s} {rate}")
                    lines += package
        self._send_script(lines)
        self._streaming, self._stream_done = True, False
        self._stream_points = []
        self._cell_on = True
        # The pulses' times: the host clock as the script starts (each leg's pulse follows
        # the previous leg; see the module doc).
        self._legs_left = 2 * int(cycles) if self.trigger_output_enabled else 0

    def read_cv(self) -> tuple[list[tuple[float, float]], bool]:
        points, self._stream_points = self._stream_points, []
        if not self._streaming:
            return points, self._stream_done
        packages: list = []
        for line in self._lines_ready():
            if line == "":
                self._streaming, self._stream_done = False, True
                break
            if line.startswith("M") and self._legs_left > 0:
                self._legs_left -= 1
                self._pulses.append(time.monotonic())
            try:
                self._take(line, packages)
            except BackendFault:
                self._streaming = False
                raise
        for package in packages:
            self._bias_v, self._current_a = self._read_package(package)
            points.append((self._bias_v, self._current_a))
        return points, self._stream_done

    def abort(self) -> None:
        if not self._streaming:
            return
        self._write("Z\n")
        deadline = time.monotonic() + self.timeout_s
        packages: list = []
        while True:
            line = self._readline(deadline)
            if line == "" or line.startswith("Z!"):  # over, or it was over already
                break
            self._take(line, packages)
        self._streaming = False
        for package in packages:
            self._bias_v, self._current_a = self._read_package(package)
            self._stream_points.append((self._bias_v, self._current_a))


def _open_pyserial(port: str, baudrate: int, timeout: float) -> Any:
    import serial  # only an EmStat needs pyserial

    try:
        return serial.Serial(port, baudrate=baudrate, timeout=timeout)
    except serial.SerialException as exc:
        raise OSError(f"cannot open {port}: {exc}") from None


def _pulse() -> list[str]:
    """A 1 ms pulse on GPIO 0 (the trigger output)."""
    return ["set_gpio 1i", "wait 1m", "set_gpio 0i"]


def open_emstat(port: str, *, timeout_s: float = SCRIPT_TIMEOUT_S) -> EmStatPotentiostat:
    """The EmStat on ``port``, or a one-line error (``ValueError``) naming what failed."""
    try:
        return EmStatPotentiostat(port, timeout_s=timeout_s)
    except (OSError, BackendFault) as exc:
        raise ValueError(f"EmStat on {port}: {exc}") from None
