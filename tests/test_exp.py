"""The kernels' own exp (common._exp, a vectorisable polynomial) and the rows built on it: softmax,
log-probability of a target, sigmoid. Checked against libm / float64 NumPy."""
import math

import numpy as np
import pytest
from numba import njit

from rnnlm.kernels import common as C
@njit(cache=True)
def _exp_all(x, out):
    for k in range(x.shape[0]):
        out[k] = C._exp(x[k])


@njit(cache=True)
def _exp_f32_all(x, out):
    for k in range(x.shape[0]):
        out[k] = C._exp_f32(x[k])


@njit(cache=True)
def _libm_all(x, out):
    for k in range(x.shape[0]):
        out[k] = math.exp(x[k])


def _ulps(a, b):
    return np.abs(a - b) / np.spacing(np.abs(b))


def test_exp_within_one_ulp_of_libm():
    rng = np.random.default_rng(0)
    x = np.concatenate([np.linspace(-708.0, 709.0, 400_001), rng.uniform(-40.0, 40.0, 100_000),
                        rng.uniform(-1e-3, 1e-3, 10_000), np.arange(-700.0, 701.0)])   # integers: r = 0
    got, want = np.empty_like(x), np.empty_like(x)
    _exp_all(x, got)
    _libm_all(x, want)
    assert _ulps(got, want).max() <= 1.0


def test_exp_f32_error_below_an_eighth_of_a_float32_ulp():
    x = np.concatenate([np.linspace(-708.0, 709.0, 400_001), np.random.default_rng(1).uniform(-90.0, 0.0, 100_000)])
    got, want = np.empty_like(x), np.empty_like(x)
    _exp_f32_all(x, got)
    _libm_all(x, want)
    assert (np.abs(got - want) / want).max() < 7.5e-9
    assert np.abs(got - want).max() > 0                      # the short polynomial, not _exp's


@pytest.mark.parametrize("fill", [_exp_all, _exp_f32_all])
def test_exp_special_values(fill):
    x = np.array([0.0, -0.0, 1.0, np.nan, -np.inf, np.inf, -708.5, -1e4, 709.5, 1e4, -745.0])
    got = np.empty_like(x)
    fill(x, got)
    assert got[0] == 1.0 and got[1] == 1.0
    assert got[2] == pytest.approx(math.e, rel=7.5e-9)
    assert np.isnan(got[3])
    assert got[4] == 0.0 and got[6] == 0.0 and got[7] == 0.0 and got[10] == 0.0
    assert got[5] == np.inf and got[8] == np.inf and got[9] == np.inf


def _softmax_ref(z):
    z = z.astype(np.float64)
    m = z.max()
    e = np.exp(z - m)
    return e / e.sum(), m + math.log(e.sum())


@pytest.mark.parametrize("dt,rtol", [(np.float32, 1e-6), (np.float64, 1e-14)])
@pytest.mark.parametrize("n", [1, 3, 4, 7, 100, 1001])
def test_softmax_row_matches_numpy(dt, rtol, n):
    rng = np.random.default_rng(n)
    z = (rng.standard_normal(n + 2) * 8).astype(dt)
    want, lse = _softmax_ref(z[:n])
    row = z.copy()
    got_lse = C._softmax_row(row, n)
    np.testing.assert_allclose(row[:n], want, rtol=rtol, atol=0)
    np.testing.assert_array_equal(row[n:], z[n:])            # only z[:n] is touched
    assert got_lse == pytest.approx(lse, rel=rtol, abs=rtol)   # the exps are summed as stored (dt)


def test_softmax_row_propagates_nan():
    """A diverged model's NaN logit must reach every probability (training sees the NaN loss)."""
    for pos in (0, 5, 99):
        z = np.linspace(-3, 3, 100).astype(np.float32)
        z[pos] = np.nan
        lse = C._softmax_row(z, 100)
        assert np.isnan(lse) and np.isnan(z).all()


@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_biased_logprob_far_below_the_max(dt):
    """The target's log-probability is exact even when its exp underflows (-200 below the max)."""
    z = np.zeros(50, dtype=dt)
    z[7] = -200.0
    bias = np.zeros(60, dtype=dt)
    bias[10:60] = 1.5
    got = C._biased_logprob(z.copy(), bias, 10, 50, 7)
    want = -200.0 - math.log(49.0 + math.exp(-200.0))
    assert got == pytest.approx(want, rel=1e-12)
    z2 = np.random.default_rng(1).standard_normal(50).astype(dt)
    p, _ = _softmax_ref(z2 + 1.5)
    assert C._biased_logprob(z2.copy(), bias, 10, 50, 3) == pytest.approx(math.log(p[3]), rel=1e-6)


def test_sigmoid_matches_reference():
    v = np.concatenate([np.linspace(-50, 50, 10001), [-1e4, 1e4, 0.0]])
    got = np.array([C._activate(x, C.SIGMOID) for x in v])
    with np.errstate(over="ignore"):
        want = 1.0 / (1.0 + np.exp(-v))
    np.testing.assert_allclose(got, want, rtol=1e-15, atol=1e-300)
    assert math.isnan(C._activate(np.nan, C.SIGMOID))
    v32 = v[:10001].astype(np.float32)
    got32 = np.array([C._activate(x, C.SIGMOID) for x in v32])
    want32 = 1.0 / (1.0 + np.exp(-v32.astype(np.float64)))
    np.testing.assert_allclose(got32, want32, rtol=7.5e-9)  # float32 input: _exp_f32, in float64
