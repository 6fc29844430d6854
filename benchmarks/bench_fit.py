"""Speed of whole-decay fits on a 16000-bin histogram (400 ns period, 25 ps bins), in one run.

    python benchmarks/bench_fit.py [--repeat 20]

Draws three decays photon by photon (seeded): X0 alone (125 ns, 500 k photons, Gaussian IRF of
0.4 ns FWHM, 2 % background), X- and X0 together (42 + 125 ns, 1 M photons), and a charged state
under bias (0.9 ns, 200 k photons) seen through an asymmetric measured IRF. Then, after a
warm-up, it times

* ``fit_decay``: Poisson maximum likelihood, periodic tail, IRF reconvolution, fitted start and
  background; mono, bi and measured-IRF fits;
* ``curve_fit``: scipy's least squares on the usual model (periodic exponential sampled at
  the bin centres, the same Gaussian IRF convolved with an FFT over the period, background)
  over all 16000 bins, Neyman weights ``1/max(y, 1)``, numerical Jacobian, started 20 % off
  the truth (it has no starting values of its own). The start is held at the steepest rise
  (``estimate_decay_start``): sampled at bin centres, the start and the amplitude are
  degenerate between samples, and a free start leaves curve_fit stuck where it began;
* ``tttrlib.Fit23``: the fit2x mono-exponential maximum-likelihood fit with a measured IRF and
  the periodic tail. It does less: the lifetime is its only free parameter (IRF position,
  background pattern and scatter fraction are given, not fitted) and it wants the parallel and
  perpendicular decays side by side ("Jordi" format), so the histogram is given twice with
  zero anisotropy. Fit25/Fit26 choose among fixed lifetimes or mix fixed patterns: not
  the same work, not timed.

Prints ms per fit, fits per second and the photons per second that this represents (photons in
the histogram x fits/s), with the lifetimes each method found. Best of ``--repeat``, one core.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
from scipy.optimize import curve_fit

from qd_bluesky.analysis import estimate_decay_start, fit_decay, gaussian_irf

try:
    import tttrlib
except ImportError:  # optional: the "bench" extra
    tttrlib = None

DT, PERIOD, N_BINS = 25e-12, 400e-9, 16000
FWHM = 0.4e-9
SIGMA = FWHM / (2 * math.sqrt(2 * math.log(2)))


def draw(rng, n, taus, fractions, *, t0=5e-9, background=0.0, jitter=None):
    comp = rng.choice(len(taus), size=n, p=fractions)
    t = t0 + rng.exponential(np.asarray(taus)[comp])
    t += jitter(rng, n) if jitter is not None else rng.normal(0.0, SIGMA, n)
    t = np.concatenate([np.mod(t, PERIOD), rng.uniform(0, PERIOD, int(background * n))])
    return np.bincount((t / DT).astype(np.int64), minlength=N_BINS + 1)[:N_BINS]


def asymmetric(rng, n):
    return rng.normal(0.0, 60e-12, n) + rng.exponential(250e-12, n)


def best_of(fn, repeat):
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


# ---- the least-squares comparison: the same model, written the usual way ----

# In ns, so that the parameters are of order one for MINPACK.
_T = (np.arange(N_BINS) + 0.5) * DT * 1e9
_IRF_FFT = np.fft.rfft(gaussian_irf(N_BINS, DT, FWHM, center_s=0.0))


def ls_fit(h, p0):
    """Least squares with the start held at the steepest rise; returns tau in seconds."""
    t0 = estimate_decay_start(h, DT) * 1e9

    def model(_, amplitude, tau, background):
        s = np.mod(_T - t0, PERIOD * 1e9)
        decay = np.exp(-s / tau) / -math.expm1(-PERIOD * 1e9 / tau)
        return amplitude * np.fft.irfft(np.fft.rfft(decay) * _IRF_FFT, n=N_BINS) + background

    popt, _ = curve_fit(model, _T, h, p0=p0, sigma=np.sqrt(np.maximum(h, 1.0)))
    return popt[1] * 1e-9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    rng = np.random.default_rng(2024)
    mono = draw(rng, 500_000, [125e-9], [1.0], background=0.02)
    bi = draw(rng, 1_000_000, [42e-9, 125e-9], [0.4, 0.6], background=0.02)
    short = draw(rng, 200_000, [0.9e-9], [1.0], jitter=asymmetric)
    irf = draw(rng, 200_000, [1e-15], [1.0], jitter=asymmetric)

    rows = []

    def record(name, hist, fn, note=""):
        seconds, taus = best_of(fn, args.repeat)
        rows.append((name, seconds, hist.sum() / seconds, taus, note))

    kw = dict(period_s=PERIOD)
    record(
        "fit_decay mono (Gaussian IRF)",
        mono,
        lambda: fit_decay(mono, DT, model="mono", **kw).tau_s,
    )
    record("fit_decay bi (Gaussian IRF)", bi, lambda: fit_decay(bi, DT, model="bi", **kw).tau_s)
    record(
        "fit_decay mono (measured IRF)",
        short,
        lambda: fit_decay(short, DT, model="mono", irf=irf, **kw).tau_s,
    )
    b0 = 0.02 * mono.sum() / N_BINS
    a0 = mono.sum() * DT / 125e-9
    record(
        "scipy curve_fit mono (LSQ)",
        mono,
        lambda: [ls_fit(mono, [1.2 * a0, 1.2 * 125.0, 1.2 * b0])],
        "start held; Neyman chi2",
    )
    if tttrlib is not None:
        # fit2x works in ns; the IRF and data are the two polarisation channels side by side.
        jordi_irf = np.concatenate([irf, irf]).astype(np.float64)
        fit23 = tttrlib.Fit23(
            dt=DT * 1e9,
            irf=jordi_irf,
            background=np.zeros_like(jordi_irf),
            period=PERIOD * 1e9,
            g_factor=1.0,
            l1=0.0,
            l2=0.0,
            convolution_stop=N_BINS - 1,
        )
        jordi = np.concatenate([short, short])
        x0 = np.array([2.0, 0.0, 0.0, 0.0])
        fixed = np.array([0, 1, 1, 1], dtype=np.int16)
        record(
            "tttrlib Fit23 mono (measured IRF)",
            short,
            lambda: [fit23(data=jordi, initial_values=x0, fixed=fixed)["x"][0] * 1e-9],
            "tau only; start, background fixed",
        )
    else:
        rows.append(("tttrlib Fit23", math.nan, math.nan, [], "tttrlib not installed"))

    print(f"{'method':36s} {'ms/fit':>8s} {'fits/s':>8s} {'Mphot/s':>8s}  tau (ns)    note")
    for name, seconds, rate, taus, note in rows:
        tau_txt = ", ".join(f"{t * 1e9:.3f}" for t in taus)
        print(
            f"{name:36s} {seconds * 1e3:8.2f} {1 / seconds:8.1f} {rate / 1e6:8.1f}"
            f"  {tau_txt:10s}  {note}"
        )
    print("truth: mono 125 ns, bi 42 + 125 ns, measured-IRF 0.9 ns")


if __name__ == "__main__":
    main()
