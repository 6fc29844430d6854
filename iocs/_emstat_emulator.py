"""An EmStat4 LR that speaks MethodSCRIPT on a pseudo-terminal, with the simulated cell.

The EmStat driver (:mod:`._emstat`) opens :attr:`EmStatEmulator.port` exactly as it opens
``/dev/ttyACM0``. The emulator answers the online commands ``t`` (firmware version), ``e``
(a script, up to an empty line) and ``Z`` (abort), runs the script's commands used by the
driver (``set_e``, ``cell_on``/``cell_off``, ``set_range``, ``set_autoranging``,
``set_range_minmax``, ``set_gpio_cfg``, ``set_gpio``, ``wait``, ``meas_loop_ca``,
``meas_loop_lsv``, ``meas_loop_cv`` with ``pck_start``/``pck_add``/``pck_end`` packages,
``on_finished:``) in real time on :class:`qd_bluesky.sim.ElectrochemicalCell`, and keeps the
truth for tests: every package sent (:attr:`EmStatEmulator.sent`), every rising edge of the
trigger output (:attr:`EmStatEmulator.trigger_edges`), every script, every abort. It knows
nothing of EPICS.
"""

from __future__ import annotations

import os
import threading
import time
import tty
from dataclasses import dataclass

from ._methodscript import (
    SET_POTENTIAL,
    STATUS_OVERLOAD,
    WE_CURRENT,
    MethodScriptError,
    Variable,
    format_package,
    parse_number,
)

#: The emulated model: EmStat4 LR, +-3 V, current ranges 1 nA .. 10 mA.
FIRMWARE = ("tes4_lr1.3 qd-bluesky MethodSCRIPT emulator\n", "R1.3*\n")
POTENTIAL_LIMIT_V = 3.0
#: MethodSCRIPT current-range index -> full scale (A) of the EmStat4 LR.
CURRENT_RANGES = {3: 1e-9, 6: 1e-8, 9: 1e-7, 12: 1e-6, 15: 1e-5, 18: 1e-4, 21: 1e-3, 24: 1e-2}
#: Error codes the emulator answers with (``!XXXX``).
ERR_UNKNOWN_COMMAND = "!4002"
ERR_BAD_ARGUMENT = "!4004"
ERR_NO_SCRIPT = "!0006"


@dataclass(frozen=True)
class Sent:
    """One data package the emulator sent: when (its clock), applied E, reported I, and the
    index of the script (in :attr:`EmStatEmulator.scripts`) that measured it."""

    t_s: float
    bias_v: float
    current_a: float
    script: int


class _Aborted(Exception):
    pass


class _ScriptError(Exception):
    pass


class EmStatEmulator:
    """An EmStat4 LR on a pseudo-terminal (see the module doc).

    Parameters
    ----------
    seed
        Seed of the simulated cell's current noise.
    clock
        Seconds, monotonic (the time of :attr:`sent` and :attr:`trigger_edges`).
    """

    def __init__(self, seed: int = 0, *, clock=time.monotonic) -> None:
        from qd_bluesky.sim import ElectrochemicalCell

        self.cell = ElectrochemicalCell(seed=seed)
        self.clock = clock
        self.applied_v = 0.0
        self.cell_is_on = False
        self.range_index = 12
        self.autorange: tuple[int, int] | None = None
        self.gpio_output_mask = 0
        self.gpio_level = 0
        #: The truth, for tests.
        self.sent: list[Sent] = []
        self.trigger_edges: list[float] = []
        self.scripts: list[list[str]] = []
        self.aborts = 0
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        self.port = os.ttyname(self._slave)
        self._write_lock = threading.Lock()
        self._abort = threading.Event()
        self._script_running = False
        self._closed = False
        self._reader = threading.Thread(target=self._serve, name="emstat-emulator", daemon=True)

    def start(self) -> EmStatEmulator:
        self._reader.start()
        return self

    def close(self) -> None:
        self._closed = True
        self._abort.set()
        for fd in (self._slave, self._master):
            try:
                os.close(fd)
            except OSError:
                pass

    # -- the wire -------------------------------------------------------------------------

    def _write(self, text: str) -> None:
        with self._write_lock:
            try:
                os.write(self._master, text.encode("ascii"))
            except OSError:
                pass  # closed

    def _lines(self):
        buffer = b""
        while not self._closed:
            try:
                chunk = os.read(self._master, 4096)
            except OSError:
                return
            if not chunk:
                return
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                yield line.decode("ascii", errors="replace").rstrip("\r")

    def _serve(self) -> None:
        script: list[str] | None = None
        for line in self._lines():
            if script is not None:
                if line == "":
                    self._start_script(script)
                    script = None
                else:
                    script.append(line.strip())
                continue
            if line == "t":
                self._write("".join(FIRMWARE))
            elif line == "e":
                script = []
            elif line == "Z":
                if self._running():
                    self.aborts += 1
                    self._abort.set()
                    self._write("Z\n")
                else:
                    self._write(f"Z{ERR_NO_SCRIPT}\n")
            elif line:
                self._write(f"{line[0]}{ERR_UNKNOWN_COMMAND}\n")

    def _running(self) -> bool:
        return self._script_running

    def _start_script(self, lines: list[str]) -> None:
        if self._running():  # the instrument takes one script at a time
            self._write(f"e{ERR_BAD_ARGUMENT}\n")
            return
        self.scripts.append(lines)
        self._abort.clear()
        self._script_running = True
        self._write("e\n")
        threading.Thread(target=self._run, args=(lines,), daemon=True).start()

    # -- the script -----------------------------------------------------------------------

    def _run(self, lines: list[str]) -> None:
        body, finished = lines, []
        if "on_finished:" in lines:
            k = lines.index("on_finished:")
            body, finished = lines[:k], lines[k + 1 :]
        try:
            self._block(body)
        except _Aborted:
            pass
        except _ScriptError as exc:
            self._write(f"{exc}\n")
        try:
            self._block(finished, abortable=False)
        except (_Aborted, _ScriptError):
            pass
        # Idle before the end line: a client may send its next script as soon as it reads it.
        self._script_running = False
        self._write("\n")

    def _block(self, lines: list[str], *, abortable: bool = True) -> None:
        k = 0
        while k < len(lines):
            words = lines[k].split("#")[0].split()
            k += 1
            if not words:
                continue
            if words[0].startswith("meas_loop_"):
                end = next((j for j in range(k, len(lines)) if lines[j] == "endloop"), None)
                if end is None:
                    raise _ScriptError(f"{ERR_BAD_ARGUMENT}: Line {k}: no endloop")
                self._measure(words, lines[k:end], line_no=k)
                k = end + 1
            else:
                self._command(words, line_no=k, abortable=abortable)

    def _numbers(self, words: list[str], line_no: int) -> list[float]:
        try:
            return [parse_number(w) for w in words if not w.startswith("nscans")]
        except MethodScriptError:
            raise _ScriptError(f"{ERR_BAD_ARGUMENT}: Line {line_no}") from None

    def _command(self, words: list[str], *, line_no: int, abortable: bool) -> None:
        name, args = words[0], words[1:]
        if name in ("var", "set_pgstat_chan", "set_pgstat_mode", "set_max_bandwidth"):
            return
        if name == "set_range_minmax":
            return
        if name == "set_range" and args[:1] == ["ba"]:
            self.range_index = self._range_index(self._numbers(args[1:], line_no)[0], line_no)
            self.autorange = None
        elif name == "set_autoranging" and args[:1] == ["ba"]:
            low, high = self._numbers(args[1:], line_no)
            self.autorange = (self._range_index(low, line_no), self._range_index(high, line_no))
            if self.autorange[0] == self.autorange[1]:
                self.range_index, self.autorange = self.autorange[0], None
        elif name == "set_e":
            self._set_e(self._numbers(args, line_no)[0], line_no)
        elif name == "cell_on":
            self.cell_is_on = True
        elif name == "cell_off":
            self.cell_is_on = False
        elif name == "set_gpio_cfg":
            mask, mode = self._numbers(args, line_no)
            if int(mode) == 1:
                self.gpio_output_mask |= int(mask)
        elif name == "set_gpio":
            level = int(self._numbers(args, line_no)[0]) & self.gpio_output_mask
            if level & 1 and not self.gpio_level & 1:
                self.trigger_edges.append(self.clock())
            self.gpio_level = level
        elif name == "wait":
            self._sleep_until(self.clock() + self._numbers(args, line_no)[0], abortable)
        else:
            raise _ScriptError(f"{ERR_UNKNOWN_COMMAND}: Line {line_no}")

    def _range_index(self, full_scale_a: float, line_no: int) -> int:
        for index, scale in CURRENT_RANGES.items():
            if scale >= full_scale_a * 0.999:
                return index
        raise _ScriptError(f"{ERR_BAD_ARGUMENT}: Line {line_no}: current range")

    def _set_e(self, bias_v: float, line_no: int) -> None:
        if abs(bias_v) > POTENTIAL_LIMIT_V:
            raise _ScriptError(f"{ERR_BAD_ARGUMENT}: Line {line_no}: potential out of range")
        self.applied_v = bias_v

    def _sleep_until(self, deadline: float, abortable: bool = True) -> None:
        while True:
            if abortable and self._abort.is_set():
                raise _Aborted
            left = deadline - self.clock()
            if left <= 0:
                return
            time.sleep(min(left, 0.005))

    def _measure(self, words: list[str], body: list[str], *, line_no: int) -> None:
        """One measurement loop: set the potential point by point, send the packages."""
        kind = words[0][len("meas_loop_") :]
        names, numbers = words[1:3], self._numbers(words[3:], line_no)
        nscans = next((int(w[7:-1]) for w in words if w.startswith("nscans(")), 1)
        if kind == "ca":
            bias, interval, run = numbers
            legs = [(bias, bias, max(1, round(run / interval)), interval)]
        elif kind == "lsv":
            begin, end, step, rate = numbers
            legs = [_leg(begin, end, step, rate)]
        elif kind == "cv":
            begin, v1, v2, step, rate = numbers
            legs = [_leg(a, b, step, rate) for a, b in ((begin, v1), (v1, v2), (v2, begin))]
            legs = legs * nscans
        else:
            raise _ScriptError(f"{ERR_UNKNOWN_COMMAND}: Line {line_no}")
        for bias in (v for leg in legs for v in (leg[0], leg[1])):
            self._set_e(bias, line_no)
        added = [w.split()[1] for w in body if w.startswith("pck_add")]
        self._write("M0000\n")
        t_next = self.clock()
        try:
            for begin, end, points, interval in legs:
                rate = 0.0 if points <= 1 or end == begin else (end - begin) / (points * interval)
                for k in range(points):
                    bias = begin if kind == "ca" else begin + (end - begin) * (k + 1) / points
                    self.applied_v = bias
                    t_next += interval
                    self._sleep_until(t_next)
                    self._send(names, added, bias, rate)
        finally:
            self._write("*\n")

    def _send(self, names: list[str], added: list[str], bias: float, rate: float) -> None:
        t = self.clock()
        current = self.cell.current_a(bias, rate, t) if self.cell_is_on else 0.0
        index = self.range_index
        if self.autorange is not None:
            low, high = self.autorange
            fits = [i for i, s in CURRENT_RANGES.items() if low <= i <= high and s >= abs(current)]
            index = fits[0] if fits else high
        scale, status = CURRENT_RANGES[index], 0
        if abs(current) > scale:
            current, status = max(-scale, min(scale, current)), STATUS_OVERLOAD
        self.range_index = index
        variables = []
        for name in added:
            if name == names[0]:
                variables.append(Variable(SET_POTENTIAL, bias))
            elif name == names[1]:
                variables.append(Variable(WE_CURRENT, current, status, index))
        package = format_package(variables)
        self.sent.append(Sent(t, bias, _parse_current(package, current), len(self.scripts) - 1))
        self._write(package)


def _leg(begin: float, end: float, step: float, rate: float) -> tuple[float, float, int, float]:
    """(begin, end, number of points, interval) of a linear sweep; the points exclude begin."""
    points = max(1, round(abs(end - begin) / step))
    return (begin, end, points, abs(end - begin) / points / rate if end != begin else step / rate)


def _parse_current(package: str, fallback: float) -> float:
    """The current as the package encodes it (the truth a client can decode)."""
    from ._methodscript import parse_package

    try:
        return parse_package(package)[WE_CURRENT].value
    except KeyError:
        return fallback
