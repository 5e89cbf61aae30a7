"""Work on several cores from Python threads running `nogil` Numba kernels.

Every threaded path runs serial kernels on a small pool of Python threads (`run_pieces`) instead of
compiling parallel kernels: Numba compiles a parallel loop's body three more times, in its
wrappers, which cost about 9 s of the cold start. Each piece writes only memory of its own (or a
disjoint range of a shared array), and partial results are combined in a fixed order, so the result
depends on the number of pieces, never on scheduling.

The pool hands work over through atomic counters (kernels.sync): a thread that finished a piece
spins for a millisecond or two (`SPIN_CYCLES`, yielding its core now and then) before it sleeps on
a condition variable, so that the next call starts within microseconds (waking a sleeping thread
costs 20-30 us on the development VM, and the full softmax's step on threads calls the pool twice
per window); the class-softmax step's runs over a chunk of windows pin their threads to CPUs of
their own (`_pin`).
"""
from __future__ import annotations

import atexit
import os
import threading

import numpy as np

SPIN_CYCLES = 1 << 22   # 1-2 ms: how long a thread spins for work, or for its helpers, before it sleeps


class _Pool:
    """Helper threads 1 .. n - 1 for run_pieces (the caller's thread runs piece 0). Helper q waits for
    its counter go[q - 1][0] to reach the number of runs it has been part of; every finished piece
    adds one to done[0]. A thread that stops spinning sleeps on `cv`, counted in `asleep` (helpers)
    or `sleepers` (the caller), so that whoever changes the counter it waits for wakes it."""

    def __init__(self):
        self.lock = threading.Lock()   # one run at a time
        self.cv = threading.Condition()
        self.go: list[np.ndarray] = []   # each helper's counter, on a cache line of its own
        self.done = np.zeros(8, np.int64)
        self.sleepers = np.zeros(8, np.int64)
        self.expected = 0
        self.threads: list[threading.Thread] = []
        self.asleep = 0
        self.fn = None
        self.errors: list = []
        self.stopping = False
        self.cpus: list[int] = []    # the CPU of each piece in the current run (empty: no pinning)
        self.base = -1               # the caller's CPU at its first pinned run: cpus start there

    def _grow(self, helpers: int) -> None:
        for q in range(len(self.go), helpers):
            self.go.append(np.zeros(8, np.int64))
            t = threading.Thread(target=self._serve, args=(q + 1,), name=f"rnnlm-{q + 1}", daemon=True)
            self.threads.append(t)
            t.start()

    def _serve(self, q: int) -> None:
        from rnnlm.kernels.sync import signal_and_wait, wait_for
        go = self.go[q - 1]
        pinned = -1
        runs = 1
        ready = wait_for(go, runs, SPIN_CYCLES)
        while True:
            if not ready:
                with self.cv:
                    self.asleep += 1
                    while go[0] < runs:
                        self.cv.wait()
                    self.asleep -= 1
            if self.stopping:
                return
            try:
                if self.cpus and self.cpus[q] != pinned:   # a helper stays where it was put
                    pinned = self.cpus[q]
                    _pin(pinned)
                self.fn(q)
            except BaseException as e:   # noqa: BLE001 (the caller re-raises it)
                self.errors[q] = e
            runs += 1
            state = signal_and_wait(self.done, self.sleepers, go, runs, SPIN_CYCLES)
            if state == 2:   # the caller sleeps: wake it, then wait for the next run
                with self.cv:
                    self.cv.notify_all()
                ready = wait_for(go, runs, SPIN_CYCLES)
            else:
                ready = state == 1

    def run(self, fn, n: int, pin: bool) -> None:
        from rnnlm.kernels.sync import signal, wait_for
        with self.lock:
            self._grow(n - 1)
            self.fn = fn
            self.errors = [None] * n
            self.expected += n - 1
            mask = own_cpus() if pin else None
            self.cpus = []
            if mask is not None and len(mask) >= n:
                if self.base not in mask:
                    self.base = _cpu_now()
                if self.base in mask:
                    order = sorted(mask)
                    at = order.index(self.base)
                    self.cpus = (order[at:] + order[:at])[:n]
            for q in range(1, n):
                signal(self.go[q - 1], 1)
            if self.asleep:
                with self.cv:
                    self.cv.notify_all()
            try:
                if self.cpus:
                    _pin(self.cpus[0])
                fn(0)
            except BaseException as e:   # noqa: BLE001 (re-raised below, once the helpers are done)
                self.errors[0] = e
            finally:
                if self.cpus:
                    _restore(mask)
            if not wait_for(self.done, self.expected, SPIN_CYCLES):
                with self.cv:
                    signal(self.sleepers, 1)
                    while self.done[0] < self.expected:
                        self.cv.wait()
                    signal(self.sleepers, -1)
            self.fn = None
            errors = [e for e in self.errors if e is not None]
            if errors:   # the cause rather than the workers left waiting for the one that failed
                from rnnlm.kernels.sync import BarrierTimeout
                raise next((e for e in errors if not isinstance(e, BarrierTimeout)), errors[0])

    def stop(self) -> None:
        """Ends the helpers (at exit)."""
        from rnnlm.kernels.sync import signal
        with self.lock:
            self.stopping = True
            for go in self.go:
                signal(go, 1)
            with self.cv:
                self.cv.notify_all()
        for t in self.threads:
            t.join()


def own_cpus() -> set | None:
    """The CPUs this thread may run on (None where the platform cannot tell or pin)."""
    try:
        return os.sched_getaffinity(0)
    except (AttributeError, OSError):
        return None


def _cpu_now() -> int:
    """The CPU this thread runs on (sched_getcpu), or -1."""
    try:
        return int(_libc().sched_getcpu())
    except (AttributeError, OSError, TypeError):
        return -1


_LIBC = []


def _libc():
    if not _LIBC:
        import ctypes
        _LIBC.append(ctypes.CDLL(None))
    return _LIBC[0]


def _pin(cpu: int) -> None:
    """Keep this thread on one CPU for a run. The threads of a run spin at barriers: two of them that
    the scheduler put on one CPU pass each barrier only by yielding it to each other (0.5 us a barrier
    instead of 0.03), and Linux does not move a thread that ran a moment ago (it counts as
    cache-hot), so such a pairing lasted whole runs on the development VM. So a run puts its n
    threads on n CPUs in a row from `base`, the CPU the caller was on at its first run (so that
    several processes, placed by the scheduler, do not all take CPUs 0 and 1): the caller for the
    run (it may run anywhere again afterwards), each helper until the CPUs change. (Pinning each
    thread where the scheduler had it instead made runs slower: threads that met on one CPU swapped
    places from run to run.) Only runs that ask for it (run_pieces' pin: the class-softmax step over
    a chunk of windows) pin: the caller's two sched_setaffinity calls take 4.5 us, and a run of
    empty pieces went from 6 to about 26 us with pinning, more than the full softmax's two runs a
    window can spare."""
    try:
        os.sched_setaffinity(0, {cpu})
    except (AttributeError, OSError):
        pass


def _restore(mask: set) -> None:
    try:
        os.sched_setaffinity(0, mask)
    except (AttributeError, OSError):
        pass


_POOL = _Pool()
atexit.register(lambda: _POOL.stop())


def _new_pool_after_fork() -> None:
    global _POOL
    _POOL = _Pool()   # a forked child has none of the parent's threads


if hasattr(os, "register_at_fork"):   # POSIX
    os.register_at_fork(after_in_child=_new_pool_after_fork)


def run_pieces(fn, n: int, pin: bool = False) -> None:
    """fn(0), ..., fn(n - 1), at once on n threads (this one runs piece 0); waits for all of them,
    then re-raises the error of the lowest piece that failed (one that is not a barrier's timeout,
    kernels.sync.BarrierTimeout, if there is one: the others waited for that piece). pin: keep the
    threads on CPUs of their own during the run (_pin), for long runs whose pieces meet at barriers;
    it costs the caller about 20 us a run on the development VM."""
    if n <= 1:
        fn(0)
        return
    _POOL.run(fn, n, pin)


def window_grad_classes(X, Y, h0, ng0, w, net, g, G, P, h_out, ng_out, upd, clip: float = 0.0,
                        flat: tuple = ()) -> float:
    """window_grad of a class softmax (cross-entropy, no direct connections) of the network w
    (kernels.bundles.Weights), net (Net), gradients g (Grads) in G parts, on P <= G
    workers (threads), for the windows X[w], Y[w] (X, Y (nw, T, B)) one after the other, each
    starting from the state and history the one before left (the first from h0, ng0); returns their
    summed loss, the last state in h_out, ng_out. One call for many windows: the work arrays are
    allocated once, and Python runs only before and after them.
    Each window runs in four phases (five with clipping, below): 0, the recurrence, by groups of
    streams; 1, the output layer, in G parts; 2, BPTT by groups of streams, then the class layer's
    step (or gradient sums) by blocks of classes; 3, the step of U, theta_j (then the same rows of
    recT and u_init) by blocks of rows and of the embedding rows of the words v with v % Gs == q
    (or, without upd, the sums of their gradients). The recurrence and BPTT: Gs = min(G, B) groups
    of streams (their dL/dU, dL/dtheta_j in buffers of their own, summed in order). The output layer: part q takes the q-th
    block of rows for the class layer (its dL/dW_c in a buffer of its own, summed in order by the
    BPTT phase) and a bin of classes for the word layer (classes dealt by work,
    kernels.threaded._class_work; every row of W, theta_k, and every row of the word layer's dL/ds
    and ln p, written by the one part that owns the row's class). The bits depend on G only: not on
    P, nor on how many windows come in one call.
    The P workers are Python threads, each running kernels.threaded.classes_worker (nogil) over its
    share of every phase's tasks and meeting the others at a barrier between phases
    (kernels.sync._barrier): one start per call rather than per phase, and no parallel kernel to
    compile (Numba compiles a parallel loop's body three more times, in its wrappers). P must not
    exceed the cores free to run them at once (step.concurrent_workers); more only wait longer at
    the barriers. Every window's setup (the rows' history, grouped by class, the classes dealt to
    the parts) runs first, serially (kernels.threaded.classes_setup, which returns the workers'
    work arrays as a kernels.bundles.ClassesWork).
    upd: the whole SGD step of each window, as window_grad: the output rows in the output phase
    (each part updates the rows it owns), the class layer in the BPTT phase, U, theta_j and the
    embedding rows in a fourth phase; the arrays of g are not written (g.emb's rows of the input words
    serve as work space: zero on entry, zero again on return). Without upd the gradients of all the
    windows add up (the fourth phase adds the groups' dL/dU, dL/dtheta_j, dL/dV).
    upd with clip > 0: the clipped step of each window (as BatchStepper.apply with `clip`): its
    gradient is formed in g (zero on entry) as without upd, each part adds up the
    squared norm of the weights it owns (its classes' output rows; for the first Gs parts a block of
    the class layer, rows of U and the input words v % Gs == q; the biases only with upd[3] != 0),
    and a fifth phase scales the step to a global norm of at most clip and takes it on those
    weights, clearing their gradient (the unused biases' gradient is dropped). The norm is summed
    part by part, so the bits depend on G only, as above. It takes the flat buffers whose blocks
    the weights and gradients are: flat = (p_flat, g_flat, offs), block i starting at offs[i] (in
    the order emb, rec, bh, out_w, bo, cls_w, bc: BatchStepper's p.flat, g.flat, _offs)."""
    from rnnlm.kernels import threaded as KP
    from rnnlm.kernels.bundles import Clipping
    T = X.shape[1]
    P = max(1, min(int(P), int(G)))
    steps = upd.shape[0] > 0
    work = KP.classes_setup(X, Y, h0, ng0, w, net, G, steps, ng_out)
    step_bias = bool(steps and upd[3] != 0.0)
    clipping = None
    if steps and clip > 0:
        if len(flat) != 3:
            raise ValueError("window_grad_classes: a clipped step needs flat = (p_flat, g_flat, offs)")
        clipping = Clipping(float(clip), *flat)
    run_pieces(lambda p: KP.classes_worker(p, P, X, Y, w, net, G, g, upd, step_bias, clipping, work),
               P, pin=X.shape[0] > 1)
    h_out[...] = work.H[T]
    total = 0.0
    for v in work.losses.tolist():   # the windows' losses, added in order
        total += v
    return total


def rnnlm_train_shards(X, Y, lens, sync, base, reps, N, M, C, S, net, tr, streams, LOGP, tree=None) -> None:
    """rnnlm-0.4b's per-word schedule on T = X.shape[0] shards of the text at once, one thread each.

    Shard t trains its own replica reps[t] (T, P) of the flat parameters `base` (P) on X[t, :lens[t]]
    (targets Y), with its own stream state (row t of each array of streams, a kernels.bundles.Stream,
    as kernels.word.rnnlm_train_stream's), the network's net (Net) and the settings tr (Train).
    After every `sync` words of each shard the replicas are merged, weight by weight, over the weights
    the round can have changed (kernels.word.changeable_pieces, merge_pieces): a weight only one shard
    changed takes that shard's value (rare words' rows keep their whole update); a weight several
    shards changed moves by the mean of their changes (adding them up, as faster-rnnlm's lock-free
    threads do, was unstable with merges this far apart).
    Every replica then restarts from the merged weights. Deterministic: the result depends on T only.
    With T = 1 this is exactly rnnlm_train_stream. ln p of every word goes to LOGP.
    tree: a hierarchical softmax's tree (kernels.bundles.Tree; C = S = 0): the shards run
    kernels.hsoftmax.hs_shard_run (streams.ng unused).
    """
    from rnnlm import kernels as K
    from rnnlm.kernels import word as KS
    T = X.shape[0]
    longest = int(lens.max()) if T else 0
    for a in range(0, longest, sync):
        pieces = _changeable(X, lens, streams.hist, a, sync, N, M, base.shape[0])
        cuts = K.piece_cuts(pieces, T).tolist()
        if tree is not None:
            from rnnlm.kernels.hsoftmax import hs_shard_run
            run_pieces(lambda t: hs_shard_run(t, a, sync, X, Y, lens, reps, N, M, tree, net, tr, streams, LOGP), T)
        else:
            run_pieces(lambda t: KS.shard_run(t, a, sync, X, Y, lens, reps, N, M, C, S, net, tr, streams, LOGP), T)
        run_pieces(lambda q: KS.merge_pieces(pieces, cuts[q], cuts[q + 1], base, reps), T)


def _changeable(X, lens, HIST, a, sync, N, M, P) -> np.ndarray:
    """kernels.word.changeable_pieces (the weights a round can change), in pieces of PIECE weights."""
    from rnnlm import kernels as K
    from rnnlm.kernels import word as KS
    return KS.changeable_pieces(X, lens, HIST, a, sync, N, M, P, K.PIECE)


def reduce_pieces_threads(g, Gbuf, pieces, n: int) -> None:
    """g += sum_q Gbuf[q] (groups in order) and Gbuf <- 0 on the pieces, on n Python threads."""
    from rnnlm import kernels as K
    m = pieces.shape[0]
    cuts = K.piece_cuts(pieces, n).tolist()
    partial = np.empty(m)
    run_pieces(lambda q: K.pieces_range(g, g, Gbuf, pieces, cuts[q], cuts[q + 1], 1, 0.0, 0.0, 0.0, partial), n)


def window_grad_groups(x, y, h0, ng0, w, net, cost, Gbuf, offs, h_out, ng_out, losses: np.ndarray) -> None:
    """kernels.window_grad with the B streams split into G = Gbuf.shape[0] contiguous groups, one per
    thread (kernels.window.group_grad: group q's gradient goes into its own buffer Gbuf[q], its loss
    into losses[q])."""
    from rnnlm import kernels as K
    G = Gbuf.shape[0]
    run_pieces(lambda q: K.group_grad(q, G, x, y, h0, ng0, w, net, cost, Gbuf, offs, h_out, ng_out, losses), G)


def sgd_pieces_threads(p, g, Gbuf, pieces, lr, scale, beta, clip, extra_sq, partial, n: int):
    """kernels.sgd_pieces with the pieces shared among n Python threads in runs of equal work
    (kernels.piece_cuts): the same bits."""
    import math
    from rnnlm import kernels as K
    m = pieces.shape[0]
    cuts = K.piece_cuts(pieces, n).tolist()
    if clip > 0:   # one run: the threads meet at a barrier to work out the norm
        bar = np.zeros(16, np.int64)
        out = np.empty(2)
        run_pieces(lambda q: K.clipped_pieces_range(p, g, Gbuf, pieces, cuts[q], cuts[q + 1], n, lr, scale, beta,
                                                    clip, extra_sq, partial, bar, out), n)
        return float(out[0]), float(out[1])
    run_pieces(lambda q: K.pieces_range(p, g, Gbuf, pieces, cuts[q], cuts[q + 1], 0, lr, scale, beta,
                                        partial), n)
    return math.sqrt(_ordered_sq(partial, m, extra_sq)) * scale, scale


def _ordered_sq(partial, m, extra_sq) -> float:
    """extra_sq + partial[0] + ... + partial[m - 1], added in order (as kernels.sgd._norm)."""
    sq = float(extra_sq)
    for v in partial[:m].tolist():
        sq += v
    return sq
