"""What bench.py measures beside rnnlm, and the sync probe that thread_pairs.py and ab_revisions.py
share with it: PyTorch's training of the same sizes (torch_run), the machine's own sgemm peak
(sgemm_gflops), and the pool's threads meeting at a barrier (launch_probe).
"""
from __future__ import annotations

import statistics
import time


def torch_run(V, H, B, T, threads, ids, words):
    """PyTorch's training of the same sizes: run() -> words trained (first call not yet made)."""
    import numpy as np
    import torch
    torch.set_num_threads(threads)
    torch.manual_seed(1)
    emb, rnn = torch.nn.Embedding(V, H), torch.nn.RNN(H, H, nonlinearity="tanh")
    lin = torch.nn.Linear(H, V)
    params = list(emb.parameters()) + list(rnn.parameters()) + list(lin.parameters())
    opt = torch.optim.SGD(params, lr=0.1)
    L = (len(ids) - 1) // B
    data = torch.from_numpy(np.asarray(ids[:L * B + 1], dtype=np.int64))
    xs = data[:L * B].view(B, L).t().contiguous()
    ys = data[1:L * B + 1].view(B, L).t().contiguous()
    windows = max(1, -(-words // (B * T)))
    state = {"h": torch.zeros(1, B, H), "w": 0}

    def step():
        w = state["w"] % (L // T)
        x, y = xs[w * T:(w + 1) * T], ys[w * T:(w + 1) * T]
        out, h = rnn(emb(x), state["h"])
        loss = torch.nn.functional.cross_entropy(lin(out).view(-1, V), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        state["h"] = h.detach()
        state["w"] += 1

    def run():
        for _ in range(windows):
            step()
        return windows * B * T

    step()                                                              # first call (discarded)
    return run


def launch_probe(threads: int):
    """probe() -> microseconds per round of `threads` threads of rnnlm's pool (rnnlm.training.threads.run_pieces)
    meeting at a barrier (kernels.sync._barrier) with nothing between: what each phase of the
    threaded kernels pays to hand over work. On this VM it reads about 0.03 µs, and several times
    more in spells of seconds to a minute in which the 2-thread training rows slow down too."""
    import numpy as np
    from numba import njit

    from rnnlm.kernels.sync import _barrier
    from rnnlm.training.threads import run_pieces

    @njit(nogil=True)
    def rounds(bar, n, reps):
        for r in range(reps):
            _barrier(bar, (r + 1) * n, 1 << 40)

    def probe(reps: int = 20000) -> float:
        bar = np.zeros(16, np.int64)
        t0 = time.perf_counter()
        run_pieces(lambda q: rounds(bar, threads, reps), threads, pin=True)
        return (time.perf_counter() - t0) / reps * 1e6
    probe(10)
    return probe


def sgemm_gflops(threads: int, n: int = 2048, reps: int = 5) -> float:
    import numpy as np
    from threadpoolctl import threadpool_limits
    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    b = np.random.default_rng(1).random((n, n), dtype=np.float32)
    with threadpool_limits(threads, user_api="blas"):
        a @ b
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter()
            a @ b
            ts.append(time.perf_counter() - t0)
    return 2 * n ** 3 / statistics.median(ts) / 1e9
