"""kernels.gemm._gemm, the register-blocked product of the recurrence and BPTT: against float64 NumPy
for every edge of the tiling, A read through strides (transposed), offsets into flat arrays; each
element a chain of fused multiply-adds in k order, so the tiling (blocks, overlapping edge blocks,
the small-matrix loop) never changes a bit; operands out of range refused."""
import numpy as np
import pytest
from numba import njit

from rnnlm.kernels.gemm import _gemm


@njit(cache=True)
def _product(A, B, C, trans_a):
    """C = A @ B (trans_a: A given as its transpose, read with swapped strides)."""
    m, n = C.shape
    K = B.shape[0]
    if trans_a:
        _gemm(A.reshape(A.size), 0, 1, m, B.reshape(B.size), 0, n, C.reshape(C.size), 0, n, m, n, K)
    else:
        _gemm(A.reshape(A.size), 0, K, 1, B.reshape(B.size), 0, n, C.reshape(C.size), 0, n, m, n, K)


@njit(cache=True)
def _flat(Af, ai, sar, sak, Bf, bi, ldb, Cf, ci, ldc, m, n, K):
    _gemm(Af, ai, sar, sak, Bf, bi, ldb, Cf, ci, ldc, m, n, K)


SHAPES = [(1, 1, 1), (3, 5, 2), (4, 16, 16), (4, 8, 8), (5, 7, 17), (16, 100, 100), (13, 50, 37),
          (7, 0, 9), (32, 33, 100), (100, 64, 100), (6, 3, 31)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m,K,n", SHAPES)
@pytest.mark.parametrize("trans_a", [False, True])
def test_gemm_matches_numpy(dtype, m, K, n, trans_a):
    rng = np.random.default_rng(m * 1000 + K * 10 + n)
    A = rng.standard_normal((m, K)).astype(dtype)
    B = rng.standard_normal((K, n)).astype(dtype)
    C = np.full((m, n), np.nan, dtype=dtype)
    _product(np.ascontiguousarray(A.T) if trans_a else A, B, C, trans_a)
    want = A.astype(np.float64) @ B.astype(np.float64)
    tol = (3e-6 if dtype == np.float32 else 1e-14) * (np.abs(A).astype(np.float64) @ np.abs(B) + 1e-30)
    assert np.all(np.abs(C - want) <= tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tiling_does_not_change_a_bit(dtype):
    """Every row alone (the small-matrix loop), every 4-row window (one row block, edge columns
    overlapping) and every column strip gives the bits of the whole product."""
    rng = np.random.default_rng(1)
    m, K, n = 13, 41, 37
    A = rng.standard_normal((m, K)).astype(dtype)
    B = rng.standard_normal((K, n)).astype(dtype)
    C = np.empty((m, n), dtype=dtype)
    _product(A, B, C, False)
    Af, Bf = A.reshape(-1), B.reshape(-1)
    for i in range(m):
        row = np.empty(n, dtype=dtype)
        _flat(Af, i * K, K, 1, Bf, 0, n, row, 0, n, 1, n, K)
        assert np.array_equal(row, C[i])
    for i in range(m - 3):
        blk = np.empty((4, n), dtype=dtype)
        _flat(Af, i * K, K, 1, Bf, 0, n, blk.reshape(-1), 0, n, 4, n, K)
        assert np.array_equal(blk, C[i:i + 4])
    for j in range(0, n, 5):
        w = min(5, n - j)
        strip = np.empty((m, w), dtype=dtype)
        _flat(Af, 0, K, 1, Bf, j, n, strip.reshape(-1), 0, w, m, w, K)
        assert np.array_equal(strip, C[:, j:j + w])


def test_offsets_and_row_strides_into_one_array():
    """A and C as disjoint parts of one flat array with row strides longer than the rows (as the
    recurrence's H[t] and H[t + 1]); what lies between the rows is left alone."""
    rng = np.random.default_rng(2)
    M, rows, ld = 20, 6, 23
    buf = rng.standard_normal(2 * rows * ld + 5).astype(np.float32)
    B = rng.standard_normal((M, M)).astype(np.float32)
    before = buf.copy()
    _flat(buf, 5, ld, 1, B.reshape(-1), 0, M, buf, 5 + rows * ld, ld, rows, M, M)
    A = before[5:5 + rows * ld].reshape(rows, ld)[:, :M]
    got = buf[5 + rows * ld:].reshape(rows, ld)
    assert np.allclose(got[:, :M], A.astype(np.float64) @ B, rtol=1e-5, atol=1e-5)
    assert np.array_equal(got[:, M:], before[5 + rows * ld:].reshape(rows, ld)[:, M:])
    assert np.array_equal(buf[:5 + rows * ld], before[:5 + rows * ld])


@pytest.mark.parametrize("args", [
    (0, 8, 1, 0, 8, 0, 8, 9, 8, 8),      # A: one row too many
    (0, 8, 1, 0, 8, 1, 8, 8, 8, 8),      # C shifted past its end
    (0, 8, 1, 1, 8, 0, 8, 8, 8, 8),      # B shifted past its end
    (-1, 8, 1, 0, 8, 0, 8, 8, 8, 8),     # a negative offset
])
def test_out_of_range_is_refused(args):
    ai, sar, sak, bi, ldb, ci, ldc, m, n, K = args
    Af = np.zeros(64, dtype=np.float64)
    Bf = np.zeros(64, dtype=np.float64)
    Cf = np.zeros(64, dtype=np.float64)
    with pytest.raises(IndexError):
        _flat(Af, ai, sar, sak, Bf, bi, ldb, Cf, ci, ldc, m, n, K)
