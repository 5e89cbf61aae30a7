"""How many threads: the one policy for every command and for the library.

- `default_threads()`: $RNNLM_THREADS if set, else the cores this process may run on (its CPU
  affinity), at most Numba's thread limit;
- `cap_threads(n)`: a requested count above those cores is capped there, with a note on stderr (more
  threads than cores only wait for each other, and the rnnlm schedule's text shards learn less);
- `use_threads(n)`: Numba's thread count and the BLAS libraries' limit, set together;
- `blas_single_thread`: BLAS on one thread inside our own threaded kernels (no oversubscription).
"""
from __future__ import annotations

import os
import sys

from rnnlm.errors import RnnlmError


def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:   # not on Linux
        return os.cpu_count() or 1


def default_threads() -> int:
    """--threads when not given: $RNNLM_THREADS if set, else the cores this process may run on (its
    CPU affinity); at most Numba's thread limit."""
    import numba
    env = os.environ.get("RNNLM_THREADS", "").strip()
    if env:
        if not env.isdigit() or int(env) < 1:
            raise RnnlmError(f"RNNLM_THREADS={env!r}: expected a whole number >= 1")
        n = int(env)
    else:
        n = cores()
    return max(1, min(n, numba.config.NUMBA_NUM_THREADS))


def use_threads(n: int) -> None:
    """Numba's thread count and the BLAS libraries' limit, both n (Numba's capped at its limit)."""
    import numba
    from threadpoolctl import threadpool_limits
    numba.set_num_threads(max(1, min(n, numba.config.NUMBA_NUM_THREADS)))
    threadpool_limits(limits=n, user_api="blas")


def cap_threads(n: int) -> int:
    """--threads above the cores this process may use is capped there, with a note (more threads
    than cores only wait for each other, and the rnnlm schedule's shards learn less)."""
    import numba
    most = max(1, min(cores(), numba.config.NUMBA_NUM_THREADS))
    if n > most:
        print(f"rnnlm: note: --threads {n} is more than the {most} core(s) this process may use; "
              f"training with {most}", file=sys.stderr)
        return most
    return n


_BLAS_LIBS = None


def _blas_libs():
    global _BLAS_LIBS
    if _BLAS_LIBS is None:
        import scipy.linalg.cython_blas  # noqa: F401  (Numba's BLAS: loaded before threadpoolctl looks)
        from threadpoolctl import ThreadpoolController
        _BLAS_LIBS = [lc for lc in ThreadpoolController().lib_controllers if lc.user_api == "blas"]
    return _BLAS_LIBS


class blas_single_thread:
    """Context manager: the BLAS libraries (the one Numba's kernels call included) run on one thread
    inside, their previous thread counts are restored after. Re-entrant: nested uses (a training
    chunk around many windows) cost almost nothing."""

    _depth = 0

    def __enter__(self):
        cls = blas_single_thread
        cls._depth += 1
        if cls._depth == 1:
            cls._old = [lc.get_num_threads() for lc in _blas_libs()]
            for lc, n in zip(_blas_libs(), cls._old):
                if n != 1:
                    lc.set_num_threads(1)
        return self

    def __exit__(self, *exc):
        cls = blas_single_thread
        cls._depth -= 1
        if cls._depth == 0:
            for lc, n in zip(_blas_libs(), cls._old):
                if n != 1:
                    lc.set_num_threads(n)
        return False


def num_threads() -> int:
    import numba
    return numba.get_num_threads()


def training_bytes(mcfg, tcfg) -> tuple[int, int]:
    """(parameter count, bytes a training run holds at its peak, estimated): the weights, their
    rollback copy and the gradient or checkpoint copy, one replica per text shard (the rnnlm schedule
    on T threads), the float64 draws that initialise the largest block, and --asgd's sums."""
    import numpy as np
    from rnnlm.model.file import param_shapes
    sizes = [int(np.prod(s)) for _, s in param_shapes(mcfg)]
    n = sum(sizes)
    shards = tcfg.threads if tcfg.schedule == "rnnlm" and tcfg.threads > 1 else 0
    avg = 16 * n if getattr(tcfg, "asgd", False) else 0   # --asgd: the float64 running sum and its kept copy
    return n, n * np.dtype(mcfg.dtype).itemsize * (3 + shards) + 24 * max(sizes) + avg


def available_memory() -> int | None:
    """MemAvailable of /proc/meminfo in bytes (None where it cannot be read)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_memory(mcfg, tcfg) -> None:
    """Refuse, in one line with the figures, a model that cannot fit in the memory available."""
    n, need = training_bytes(mcfg, tcfg)
    avail = available_memory()
    if avail is not None and need > avail:
        raise RnnlmError(f"a model of {n:,} parameters (vocabulary {mcfg.vocab_size:,}, hidden {mcfg.hidden:,}) "
                         f"needs about {need / 2**30:.1f} GiB to train, more than the {avail / 2**30:.1f} GiB "
                         f"of memory available; use a smaller --hidden or vocabulary")
