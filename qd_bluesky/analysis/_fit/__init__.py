"""Whole-decay fits: Poisson maximum likelihood of periodic, IRF-convolved exponentials.

The model of a decay histogram (bins of width ``dt`` after the laser sync, period ``P``)::

    mu_j = sum_i N_i / tau_i * [irf (*) d_i]_j + b

``d_i`` is the decay of component ``i`` started at ``t0`` *with the tails of all earlier pulses*:
over one period its density is ``exp(-s / tau) / (1 - exp(-P / tau))``, ``s = (t - t0) mod P``
(the sum of the geometric series of pulses). ``N_i`` is the number of photons of component
``i`` per full period, so the intensity fractions are ``N_i / sum N`` (= ``A_i tau_i / sum A
tau`` with ``A`` the amplitudes); ``b`` is a flat background per bin. Every bin is integrated
exactly, with ``t0`` anywhere inside a bin, so the model is smooth in ``t0`` even when the IRF
spans only a bin or two:

* a Gaussian IRF is convolved analytically (the exponentially modified Gaussian);
* a measured IRF is read as a piecewise-constant density on its bins and convolved as such
  (locally, or with an FFT when it is wide);
* without IRF, the bin integrals of the bare decay.

Speed: far from the rise, an exponential through any IRF is the same exponential times a
constant ``L(tau)`` (the IRF's Laplace transform at ``1/tau``), so only bins within the IRF's
reach of the rise need the full formula. The likelihood runs over blocks of bins, single bins
near the rise and wider ones away from it (the summed counts of an exponential over a block much
shorter than its lifetime keep practically all the information), each summed in closed form:
a few hundred terms instead of 16000 bins. Deviance and chi-square are those of the blocks.

The fit minimises the Poisson deviance by Levenberg-Marquardt steps on the Fisher information
(Fisher scoring), over log-parameters that keep photons, lifetimes and background positive and
the lifetimes ordered; starting values come from a grid over the lifetimes with the linear
parameters fitted at each point. Standard errors come from the inverse Fisher information at
the optimum; a parameter that ends on its bound (e.g. no background) is held there, and the
others' errors are conditional on it.

Modules: ``_blocks`` the bare periodic decay's bin integrals and the block sums (with the
interface a response offers them), ``_irf_models`` the responses (none, Gaussian, sampled),
``_solver`` the likelihood over blocks, its minimiser and the starting values, ``_result``
the :class:`DecayFit` and its making, ``_entry`` :func:`fit_decay` and the project's fit rule
:func:`fit_decay_models`.
"""

from ._blocks import _block_decay as _block_decay
from ._entry import (
    BI_EXP_DEVIANCE_GAIN,
    BI_EXP_MIN_FRACTION,
    DEFAULT_IRF_FWHM_S,
    FIT_MIN_COUNTS,
    DecayFits,
    Model,
    fit_decay,
    fit_decay_models,
)
from ._irf_models import _GaussianIrf as _GaussianIrf
from ._irf_models import _NoIrf as _NoIrf
from ._irf_models import _SampledIrf as _SampledIrf
from ._result import DecayFit

# Besides these, the model's pieces (``_block_decay`` and the responses ``_NoIrf``,
# ``_GaussianIrf``, ``_SampledIrf``) are imported here for tests/analysis/test_fit.py, which
# checks them against closed forms.
__all__ = [
    "BI_EXP_DEVIANCE_GAIN",
    "BI_EXP_MIN_FRACTION",
    "DEFAULT_IRF_FWHM_S",
    "FIT_MIN_COUNTS",
    "DecayFit",
    "DecayFits",
    "Model",
    "fit_decay",
    "fit_decay_models",
]
