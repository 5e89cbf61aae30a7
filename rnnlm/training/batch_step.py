"""One parameter update of the minibatch schedule: kernels for the gradient, then the optimiser.

Kept apart from the training loop so that tests can drive single updates. The gradient is that of
the loss summed over the window's T steps and averaged over its B streams; clipping rescales it to a
global L2 norm of at most `clip`; L2 (beta) acts on the weights the update touches. Without biases
(ModelConfig.bias False) the bias blocks stay at zero. Training calls `step` (gradient and update
in one: without clipping, a class softmax takes the whole SGD step inside the gradient kernel).

Threads (Numba's, `numba.set_num_threads`, or `threads=`): one thread runs kernels.window_grad (no
parallel kernel is compiled). On more, a class softmax shares the output layer among the threads by
classes (threads.window_grad_classes: each class's rows of W written by one thread, no copies; the
recurrence and BPTT by groups of streams; the update of the other weights in later phases of the
same workers); a full softmax splits the B streams into one group per thread (Python threads running
the serial kernel, rnnlm/training/threads.py), each accumulating into its own gradient buffer, summed in a
fixed order by the update while it applies them. The same thread count
gives the same bits every run; different counts differ only by rounding. BLAS runs single-threaded
inside the kernels (`blas_single_thread`) so that our threads and the BLAS library's do not
oversubscribe the cores. Models with direct connections compute their gradient on one thread.
"""
from __future__ import annotations

import os

import numpy as np

from rnnlm import kernels as K
from rnnlm.kernels.bundles import make_net
from rnnlm.model.layout import ClassInfo, grads, history_width, tree_of, weights
from rnnlm.model.file import Params
from rnnlm.runtime import blas_single_thread, num_threads
from rnnlm.training.threads import (own_cpus, reduce_pieces_threads, sgd_pieces_threads, window_grad_classes,
                           window_grad_groups)


def concurrent_workers(parts: int) -> int:
    """How many workers threads.window_grad_classes may run its `parts` on: no more than the cores
    this process may use (the workers wait for each other at barriers, kernels.sync._barrier)."""
    mask = own_cpus()
    cores = len(mask) if mask else (os.cpu_count() or 1)
    return max(1, min(parts, cores))


_NO_UPDATE = np.empty(0)


class BatchStepper:
    """Holds the gradient buffers of the minibatch schedule and performs updates.

    threads: compute threads of the gradient and the update (None: Numba's current thread count,
    as set by `numba.set_num_threads`); the gradient of a model with direct connections uses one.
    """

    def __init__(self, params: Params, classes: ClassInfo, activation: int, cost: int,
                 independent: bool, eos: int, h_init: float, threads: int | None = None):
        self.p = params
        self.dorder = params.cfg.direct_order
        self.bias = params.cfg.bias
        self._g = params.zeros_like()
        self.ci = classes
        self.act, self.cost = activation, cost
        self.independent, self.eos, self.h_init = bool(independent), int(eos), float(h_init)
        self.net = make_net(classes.word_class, classes.class_starts, activation, independent, eos, h_init,
                            self.dorder)
        self.tree = tree_of(classes)
        self.threads = threads
        self._offs = np.array([params.offsets[n][0] for n in params.names] + [params.flat.size], np.int64)
        self._groups = np.zeros((0, params.flat.size), params.flat.dtype)  # (G, P) per-group gradients
        self._pending = None   # the (x, y) whose gradient still sits in the group buffers

    @property
    def g(self) -> Params:
        """The accumulated gradient (group buffers summed in first)."""
        self._flush()
        return self._g

    def _threads(self) -> int:
        return max(1, int(self.threads) if self.threads is not None else num_threads())

    def _pieces(self, x, y, bias_dense: bool, bias_out: bool) -> np.ndarray:
        return K.touched_pieces(x, y, self.ci.word_class, self.ci.class_starts, self.ci.num_classes == 0,
                                self._offs, self.p.cfg.hidden, bias_dense, True, bias_out, K.PIECE)

    def _flush(self) -> None:
        if self._pending is not None:
            x, y = self._pending
            reduce_pieces_threads(self._g.flat, self._groups, self._pieces(x, y, True, True),
                                  self._groups.shape[0])
            self._pending = None

    def fresh_history(self, batch: int) -> np.ndarray:
        """The direct-connection history a stream starts with (end-of-sentence ids)."""
        return np.full((batch, history_width(self.dorder)), self.eos, dtype=np.int32)

    def gradient(self, x: np.ndarray, y: np.ndarray, h: np.ndarray, ng: np.ndarray,
                 upd: np.ndarray = _NO_UPDATE, clip: float = 0.0) -> tuple[float, np.ndarray, np.ndarray]:
        """Accumulate dL/dparam of one (T, B) window into self.g; returns (loss, final state,
        final direct-connection history). upd, clip: see `step` (class softmax only; clip on several
        threads only)."""
        h_out = np.empty_like(h)
        ng_out = np.empty_like(ng)
        if self.ci.tree is not None:
            return self._hs_windows(x[None], y[None], h, ng, upd)
        threads = self._threads()
        if clip > 0 and upd.size and (threads == 1 or self.p.direct.size):
            raise ValueError("a clipped step in the kernel needs several threads and no direct connections")
        self._flush()
        g = self._g
        with blas_single_thread():
            if threads == 1 or self.p.direct.size:   # direct connections: one thread
                loss = K.window_grad(x, y, h, ng, weights(self.p), self.net, self.cost, grads(g), h_out, ng_out,
                                     upd)
                return loss, h_out, ng_out
            if self.ci.num_classes > 0:   # the output layer shared by classes: no per-thread copies of W
                loss = window_grad_classes(x[None], y[None], h, ng, weights(self.p), self.net, grads(g), threads,
                                           concurrent_workers(threads), h_out, ng_out, upd, clip,
                                           (self.p.flat, g.flat, self._offs))
                return loss, h_out, ng_out
            groups = min(threads, x.shape[1])
            if self._groups.shape[0] != groups:
                self._groups = np.zeros((groups, self.p.flat.size), self.p.flat.dtype)
            losses = np.zeros(groups)
            window_grad_groups(x, y, h, ng, weights(self.p), self.net, self.cost, self._groups, self._offs, h_out,
                               ng_out, losses)
        self._pending = (x, y)
        loss = 0.0
        for v in losses:
            loss += float(v)
        return loss, h_out, ng_out

    def touched_out_rows(self, y: np.ndarray) -> np.ndarray | None:
        """Rows of out_w / bo an update touches: all (None) for a full softmax, else the words of the
        classes of the window's targets."""
        if self.ci.num_classes == 0:
            return None
        cls = np.unique(self.ci.word_class[y.ravel()])
        starts, ends = self.ci.class_starts[cls], self.ci.class_starts[cls + 1]
        return np.concatenate([np.arange(a, b, dtype=np.int64) for a, b in zip(starts, ends)])

    def step(self, x: np.ndarray, y: np.ndarray, h: np.ndarray, ng: np.ndarray, lr: float, beta: float,
             clip: float, scale: float) -> tuple[float, np.ndarray, np.ndarray]:
        """One update on window (x, y): `gradient` then `apply`. Without clipping, a class softmax
        takes the whole step inside the gradient kernel and never stores its gradient: each class's
        output rows as soon as its dL/ds is formed, the rest once the gradient is complete (on
        several threads, in parallel phases). The same update up to rounding (the output rows' sums
        in another order), with one pass over the output rows instead of several (they are most of
        the update at hidden 100 - 200) and no call into the optimiser. With clipping on several
        threads (no direct connections) the kernel takes the clipped step in a phase of its own
        (threads.window_grad_classes). Returns gradient's (loss, state, history). Expects the
        gradient buffers clear, as after `apply` (no `gradient` call since the last update).
        A hierarchical softmax always takes its step in the kernel (clipped there too)."""
        if self.ci.tree is not None:
            return self.step_windows(x[None], y[None], h, ng, lr, beta, clip, scale)
        if not self._kernel_steps(x.size, clip):   # (pending groups: full softmax only)
            out = self.gradient(x, y, h, ng)
            self.apply(x, y, lr, beta, clip, scale)
            return out
        return self.gradient(x, y, h, ng, np.array([lr, scale, beta, 1.0 if self.bias else 0.0]), clip)

    def _kernel_steps(self, window: int, clip: float) -> bool:
        """Whether the gradient kernel takes the whole step of a window of `window` tokens: a class
        softmax, at most 1024 tokens (one chunk of the output layer), and without clipping, or with
        it on several threads without direct connections (window_grad_classes)."""
        if self.ci.num_classes == 0 or window > 1024:
            return False
        return clip <= 0 or (self._threads() > 1 and not self.p.direct.size)

    def step_windows(self, X: np.ndarray, Y: np.ndarray, h: np.ndarray, ng: np.ndarray, lr: float, beta: float,
                     clip: float, scale: float) -> tuple[float, np.ndarray, np.ndarray]:
        """`step` on the windows X[w], Y[w] (X, Y (nw, T, B)) one after the other, each from the state
        the one before left; returns the summed loss and the last state and history. Where the
        gradient kernel takes the whole step (a class softmax, no clipping; on several threads, no
        direct connections), one kernel call takes all the windows (kernels.windows_grad,
        window_grad_classes: the same bits as one call per window, without the Python and dispatch
        work between them; with clipping, on several threads only); else one `step` each."""
        nw, T, B = X.shape
        if self.ci.tree is not None:
            return self._hs_windows(X, Y, h, ng, np.array([lr, scale, beta, 1.0 if self.bias else 0.0, clip]))
        threads = self._threads()
        if not self._kernel_steps(T * B, clip) or nw == 0 or (threads > 1 and self.p.direct.size):
            loss = 0.0
            for w in range(nw):
                lw, h, ng = self.step(X[w], Y[w], h, ng, lr, beta, clip, scale)
                loss += lw
            return loss, h, ng
        self._flush()
        g = self._g
        h_out = np.empty_like(h)
        ng_out = np.empty_like(ng)
        upd = np.array([lr, scale, beta, 1.0 if self.bias else 0.0])
        with blas_single_thread():
            if threads == 1:
                loss = K.windows_grad(X, Y, h, ng, weights(self.p), self.net, self.cost, grads(g), h_out, ng_out, upd)
            else:
                loss = window_grad_classes(X, Y, h, ng, weights(self.p), self.net, grads(g), threads,
                                           concurrent_workers(threads), h_out, ng_out, upd, clip,
                                           (self.p.flat, g.flat, self._offs))
        return loss, h_out, ng_out

    def _hs_windows(self, X, Y, h, ng, upd):
        """Hierarchical softmax (one thread, no direct connections): the windows' gradient added
        into self.g (upd empty), or each window's whole step taken (upd = lr, scale, beta, bias,
        clip); returns (loss, last state, history ng unchanged)."""
        from rnnlm.kernels.hsoftmax import hs_windows_grad
        h_out = np.empty_like(h)
        with blas_single_thread():
            loss = hs_windows_grad(X, Y, h, weights(self.p), self.tree, self.net, grads(self._g), h_out, upd)
        return loss, h_out, ng.copy()

    def apply(self, x: np.ndarray, y: np.ndarray, lr: float, beta: float, clip: float, scale: float) -> float:
        """SGD on the accumulated gradient (times `scale`), clipped to global norm `clip` (0 = off),
        with L2 `beta` on the touched weights: the embedding rows of the inputs x, the output rows of
        the classes of the targets y (all for a full softmax), the dense blocks, the direct
        connections with a nonzero gradient. Clears the gradient; returns its norm (before clipping)."""
        p = self.p
        fused = self._pending is not None and self._pending[0] is x and self._pending[1] is y
        if not fused:
            self._flush()
        g = self._g
        groups = self._groups if fused else self._groups[:0]
        pieces = self._pieces(x, y, self.bias, self.bias)
        extra = K.sq_norm_dense(g.direct) if g.direct.size else 0.0
        args = (p.flat, g.flat, groups, pieces, float(lr), float(scale), float(beta), float(clip), float(extra),
                np.empty(len(pieces)))
        if self._threads() == 1:
            norm, used = K.sgd_pieces(*args)
        else:
            norm, used = sgd_pieces_threads(*args, self._threads())
        if fused:
            self._pending = None
            if not self.bias:   # the unused bias gradients the groups accumulated
                for name in ("bh", "bo", "bc"):
                    a, b = p.offsets[name]
                    self._groups[:, a:b] = 0.0
        if g.direct.size:
            K.sgd_touched(p.direct, g.direct, lr, used, beta)
        if not self.bias:  # gradients of the unused biases are discarded
            g.bh[:] = 0.0
            g.bo[:] = 0.0
            g.bc[:] = 0.0
        return norm
