#!/usr/bin/env python
"""The recurrence's small matrix products: kernels.gemm._gemm against NumPy's np.dot (OpenBLAS) inside
Numba, on one thread, µs per product (median of 5 timed runs after a compiling one).

    python dev/gemm_bench.py [--hidden 100 200] [--rows 8 16 32 128]

Shapes: rows x H by H x H (a step of the recurrence or of BPTT for that many streams).
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from numba import njit

from rnnlm.kernels.gemm import _gemm
from rnnlm.runtime import blas_single_thread


@njit(cache=True)
def _run_gemm(reps, A, B, C):
    m, K = A.shape
    n = B.shape[1]
    for _ in range(reps):
        _gemm(A.reshape(m * K), 0 * m, K, 1 + 0 * m, B.reshape(K * n), 0 * m, n, C.reshape(m * n), 0 * m, n, m, n, K)


@njit(cache=True)
def _run_dot(reps, A, B, C):
    for _ in range(reps):
        np.dot(A, B, C)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hidden", type=int, nargs="+", default=[100, 200])
    ap.add_argument("--rows", type=int, nargs="+", default=[8, 16, 32, 128])
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    args = ap.parse_args()
    dt = np.dtype(args.dtype)
    rng = np.random.default_rng(0)
    print(f"{time.strftime('%Y-%m-%d %H:%M')}, {args.dtype}, one thread; µs per product (median of 5)")
    print("| rows x H by H x H | _gemm | np.dot (BLAS) |")
    print("|---|--:|--:|")
    with blas_single_thread():
        for H in args.hidden:
            for m in args.rows:
                A = rng.standard_normal((m, H)).astype(dt)
                B = rng.standard_normal((H, H)).astype(dt)
                C = np.empty((m, H), dtype=dt)
                reps = max(1, int(2e8 / (m * H * H)))
                out = []
                for fn in (_run_gemm, _run_dot):
                    fn(1, A, B, C)
                    times = []
                    for _ in range(5):
                        t0 = time.perf_counter()
                        fn(reps, A, B, C)
                        times.append((time.perf_counter() - t0) / reps * 1e6)
                    out.append(statistics.median(times))
                print(f"| {m} x {H} by {H} x {H} | {out[0]:.1f} | {out[1]:.1f} |")


if __name__ == "__main__":
    main()
