"""Data-parallel training on Ray: `rnnlm train --workers N [--ray-address ADDR]`.

The per-word schedule on N Ray actors instead of N threads. Actor t (`ShardWorker`) owns text shard
t (the same contiguous shards as `--threads N`), reads it itself from the memory-mapped id cache
(the driver sends the path and the shard's bounds; where the file is absent or different on the
actor's node the driver ships the shard through the object store), keeps its replica of the
weights and its stream state, and runs the thread shards' kernel (kernels.word.shard_run) for
`sync` words a round; the kernels are compiled (or loaded from Numba's cache) once per actor and
reused for every round and epoch. After each round it returns the blocks of weights its replica
changed (kernels.mixing), the driver merges them with the thread shards' rule and kernel
(kernels.word.merge_pieces: iterative parameter mixing, a weight one shard changed takes its value,
one several changed the mean of their changes) and sends the merged blocks back with the next
round. So `--workers N` trains exactly what `--threads N` trains: the same weights, bit for bit.

The driver is rnnlm.training.loop.Trainer (epochs, learning-rate schedule, rollback, validation,
checkpoints, resume) with the chunk step replaced: the stream state comes back from the actors at
the end of every chunk, so checkpoints and `--resume` work as with threads. Ray is imported only
here, and only when training starts: `import rnnlm` and every other command work without it.
"""
from __future__ import annotations

import hashlib
import logging
import os
import signal

import numpy as np

from rnnlm.errors import RnnlmError
from rnnlm.training.loop import RNNLM_L2_EVERY, Trainer, _fixed_sum

INSTALL = 'pip install "rnnlm-numba[distributed]"'


def import_ray():
    """The ray module, or the one-line error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise RnnlmError(f"--workers needs Ray, which is not installed: {INSTALL}") from None
    return ray


def _digest(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a, dtype=np.int32).tobytes()).hexdigest()[:16]


class ShardWorker:
    """One text shard of the per-word schedule (a Ray actor: ray.remote(ShardWorker)).

    ids[lo:hi] is the shard's targets, ids[lo - 1:hi - 1] its inputs (the first input of the text is
    </s>); `spec` holds the sizes and options (DistributedTrainer._spec)."""

    def __init__(self, t: int, ids_path: str | None, lo: int, hi: int, digest: str, spec: dict):
        self.t, self.lo, self.hi, self.digest = t, lo, hi, digest
        # writable copies: a read-only array (as Ray hands them out) is another type to Numba
        self.spec = {k: (np.array(v) if isinstance(v, np.ndarray) else v) for k, v in spec.items()}
        self.X = self.Y = None
        self.missing = "no id file given"
        if ids_path:
            try:
                ids = np.load(ids_path, mmap_mode="r", allow_pickle=False)
                part = np.asarray(ids[max(0, lo - 1):hi])
                if _digest(part[len(part) - (hi - lo):]) != digest:
                    self.missing = f"{ids_path} differs from the driver's"
                else:
                    self._set_data(part)
            except (OSError, ValueError) as exc:
                self.missing = f"{ids_path}: {exc.__class__.__name__}"

    def _set_data(self, part: np.ndarray) -> None:
        n = self.hi - self.lo
        y = np.array(part[len(part) - n:], dtype=np.int32)
        x = np.empty_like(y)
        if n:
            x[0] = self.spec["eos"] if self.lo == 0 else part[0]
            x[1:] = y[:-1]
        self.X, self.Y = x[None], y[None]            # (1, n): shard_run's layout for one shard
        self.lens = np.array([n], dtype=np.int64)
        self.logp = np.zeros((1, n), dtype=np.float64)
        self.missing = ""

    def status(self) -> str:
        """"" when the shard is loaded, else why not (the driver then calls `load`)."""
        return self.missing

    def load(self, part: np.ndarray) -> str:
        """The shard shipped by the driver (ids[lo - 1:hi], or ids[0:hi] for the first shard)."""
        if _digest(part[len(part) - (self.hi - self.lo):]) != self.digest:
            return "the shipped shard is damaged"
        self._set_data(part)
        return ""

    def start_epoch(self, flat: np.ndarray) -> int:
        """The weights every round of the epoch starts from (until merged blocks replace them)."""
        self.base = np.array(flat)                   # a writable copy (Ray hands out read-only views)
        self.rep = self.base.copy()
        return os.getpid()

    def round(self, update, a: int, sync: int, lr: float, drop_seed: int, state, want_state: bool):
        """Apply the merged blocks of the previous round, take the stream state if given, train
        words a : a + sync of the shard (clipped to its length); returns the blocks of weights that
        changed, their values, ln p of the words and, with want_state, the stream state."""
        from rnnlm import kernels as K
        from rnnlm.kernels import mixing as KM
        from rnnlm.kernels import word as KS
        from rnnlm.kernels.bundles import make_net, make_train
        from rnnlm.model.layout import stream_of
        s = self.spec
        if update is not None:
            blocks, values = update
            KM.scatter_blocks(self.base, blocks, s["block"], values)
            KM.scatter_blocks(self.rep, blocks, s["block"], values)
        if state is not None:
            self.state = {k: np.array(v)[None] for k, v in state.items()}   # (1, ...): one shard
        st = self.state
        N, M, P = s["N"], s["M"], self.base.shape[0]
        pieces = KS.changeable_pieces(self.X, self.lens, st["hist"], a, sync, N, M, P, K.PIECE)
        net = make_net(s["word_class"], s["class_starts"], s["act"], s["independent"], s["eos"], s["h_init"],
                       s["dorder"])
        tr = make_train(lr, s["beta"], s["clip"], s["block_bptt"], s["bias"], RNNLM_L2_EVERY, s["drop_in"],
                        s["drop_out"], drop_seed + self.t * KS.SHARD_SEED_STEP)
        KS.shard_run(0, a, sync, self.X, self.Y, self.lens, self.rep[None], N, M, s["C"], s["S"], net, tr,
                     stream_of(st), self.logp)
        blocks = KM.changed_blocks(self.base, self.rep, pieces, s["block"])
        values = KM.gather_blocks(self.rep, blocks, s["block"])
        n = self.lens[0]
        lp = self.logp[0, min(a, n):min(a + sync, n)].copy()
        return blocks, values, lp, ({k: v[0] for k, v in st.items()} if want_state else None)


class DistributedTrainer(Trainer):
    """Trainer whose shards are Ray actors (tcfg.workers of them). ids_path: the memory-mapped id
    cache the training ids came from (corpus.prepare's SplitStats.cache_path), read by the actors
    themselves; None ships every shard through the object store. ray_address: join that cluster
    ("auto", "HOST:6379"); None: $RAY_ADDRESS if set, else a local Ray of this run's own. A Ray
    already initialised in this process (ray.init) is used as it is and left running."""

    def __init__(self, mcfg, tcfg, tokenizer, train_ids, valid_ids, model_path, log=None, progress=None,
                 checks=None, ids_path: str | None = None, ray_address: str | None = None):
        if tcfg.workers < 1 or tcfg.schedule != "rnnlm":
            raise RnnlmError("DistributedTrainer needs --workers >= 1 and --schedule rnnlm")
        super().__init__(mcfg, tcfg, tokenizer, train_ids, valid_ids, model_path, log, progress, checks=checks)
        self.ids_path = os.path.abspath(ids_path) if ids_path else None   # actors run elsewhere
        self.ray_address = ray_address
        self.workers: list = []
        self._pending = None
        self._ray = None
        self._started = False

    # ------------------------------------------------------------------ Ray
    def _spec(self) -> dict:
        m, t = self.mcfg, self.tcfg
        return dict(N=m.vocab_size, M=m.hidden, C=m.classes, S=m.direct_size, act=m.activation_code,
                    word_class=self.classes.word_class, class_starts=self.classes.class_starts,
                    beta=t.beta, clip=t.clip, block_bptt=t.bptt_block, independent=t.independent,
                    eos=self.eos, h_init=m.reset_hidden, dorder=m.direct_order, bias=m.bias,
                    drop_in=t.dropout_input, drop_out=t.dropout, block=m.hidden)

    def _start(self) -> None:
        """Connect to Ray (or start it: then _started, and _stop shuts it down) and start one actor
        per shard."""
        ray = self._ray = import_ray()
        if not ray.is_initialized():
            kw = dict(logging_level=logging.ERROR, log_to_driver=False)
            try:
                address = self.ray_address or os.environ.get("RAY_ADDRESS")
                if address:
                    _reachable(address)
                    ray.init(address=address, **kw)
                else:
                    # Ray runs its workers at niceness 15 by default: on a machine shared with other
                    # work they would get only what everything else leaves (threads run at 0)
                    os.environ.setdefault("RAY_worker_niceness", "0")
                    # "local": a Ray of this run's own, never another run's (ray.init() would join
                    # the latest `ray start` cluster, or another local run's, which may end first)
                    ray.init(address="local", num_cpus=max(self.shards, os.cpu_count() or 1),
                             include_dashboard=False, **kw)
            except RnnlmError:
                raise
            except Exception as exc:   # noqa: BLE001 (Ray raises ConnectionError, RuntimeError, ...)
                where = f"the Ray cluster at {address}" if address else "a local Ray"
                hint = ("; a cluster with token authentication needs RAY_AUTH_MODE=token and its token "
                        "(docs/distributed.md)" if address and not os.environ.get("RAY_AUTH_MODE") else "")
                raise RnnlmError(f"could not start or join {where}: {str(exc).splitlines()[0]}{hint}") from None
            self._started = True
        cpus = ray.cluster_resources().get("CPU", 0)
        if cpus < self.shards:
            raise RnnlmError(f"--workers {self.shards} needs {self.shards} CPUs; the Ray cluster has {cpus:g}")
        actor = ray.remote(num_cpus=1, max_restarts=0)(ShardWorker)
        x_len, L, spec = len(self.train_ids), self._units(), self._spec()
        bounds = [(min(s * L, x_len), min((s + 1) * L, x_len)) for s in range(self.shards)]
        self.workers = [actor.options(scheduling_strategy="SPREAD").remote(
            s, self.ids_path, lo, hi, _digest(self.train_ids[lo:hi]), spec) for s, (lo, hi) in enumerate(bounds)]
        status = self._get([w.status.remote() for w in self.workers])
        for s, why in enumerate(status):
            if why:   # the id file is not there on that node (or not the same): ship the shard
                lo, hi = bounds[s]
                if self.ids_path:
                    self.log(f"worker {s}: {why}; its shard goes through Ray's object store")
                why = self._get([self.workers[s].load.remote(np.ascontiguousarray(self.train_ids[max(0, lo - 1):hi]))])[0]
                if why:
                    raise RnnlmError(f"worker {s}: {why}")

    def _stop(self) -> None:
        ray = self._ray
        if ray is None:
            return
        for w in self.workers:
            try:
                ray.kill(w)
            except Exception:   # noqa: BLE001 (already dead)
                pass
        self.workers = []
        if self._started:
            ray.shutdown()
            self._started = False

    def _get(self, refs):
        ray = self._ray
        try:
            return ray.get(refs)
        except ray.exceptions.RayActorError as exc:
            kept = (f"{self.ckpt_path} holds the last checkpoint: continue with the same command and --resume"
                    if os.path.exists(self.ckpt_path) else "no checkpoint had been written yet")
            raise RnnlmError(f"a Ray worker died ({_first_line(exc)}); {kept}") from None
        except ray.exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, RnnlmError):
                raise RnnlmError(str(cause)) from None
            raise RnnlmError(f"a Ray worker failed: {_first_line(cause or exc)}") from None

    def run(self, resume: bool = False):
        old_term = None
        try:
            # SIGTERM does what Ctrl-C does (Trainer's flag: checkpoint at the next chunk, then stop)
            old_term = signal.signal(signal.SIGTERM, _as_sigint)
        except ValueError:   # not the main thread
            pass
        try:
            self._start()
            return super().run(resume)
        finally:
            if old_term is not None:
                signal.signal(signal.SIGTERM, old_term)
            self._stop()

    # ------------------------------------------------------------------ the chunk step
    def _epoch_data(self, params):
        """Every actor starts from params (the epoch's, or those rolled back to)."""
        ref = self._ray.put(params.flat)
        self._get([w.start_epoch.remote(ref) for w in self.workers])
        self._pending = None
        L, n = self._units(), len(self.train_ids)
        return np.array([max(0, min(L, n - s * L)) for s in range(self.shards)], dtype=np.int64)

    def _train_chunk(self, params, sstate, lr, a, b, data):
        from rnnlm.kernels import mixing as KM
        lens = data
        T, block = self.shards, self.mcfg.hidden
        one = T == 1   # Trainer keeps one shard's stream state without the shard axis
        views = {k: (v[None] if one else v) for k, v in sstate.items()}   # (T, ...) for any T
        n_c = np.clip(lens - a, 0, b - a).astype(np.int64)
        sync = min(self.sync, b - a)
        longest = int(n_c.max())
        logp = np.zeros((T, b - a), dtype=np.float64)
        for r in range(0, longest, sync):
            first, last = r == 0, r + sync >= longest
            res = self._get([w.round.remote(self._pending, a + r, min(sync, b - a - r), lr, self.drop_seed,
                                            {k: v[t] for k, v in views.items()} if first else None, last)
                             for t, w in enumerate(self.workers)])
            for t, (blocks, values, lp, st) in enumerate(res):
                logp[t, r:r + len(lp)] = lp
                if st is not None:
                    for k, v in st.items():
                        views[k][t] = v
            sent_b = [x[0] for x in res]
            union = np.unique(np.concatenate(sent_b))
            merged = KM.merge_sent(params.flat, union, block, np.concatenate(sent_b),
                                   np.concatenate([x[1] for x in res]), _offsets(sent_b),
                                   _offsets([x[1] for x in res]))
            self._pending = self._ray.put((union, merged))
        return _fixed_sum(logp), int(n_c.sum())   # the epoch's sum in fixed point, as Trainer's


def _as_sigint(sig, frame) -> None:
    """SIGTERM handler: whatever SIGINT does now (during training: Trainer's checkpoint-and-stop flag)."""
    handler = signal.getsignal(signal.SIGINT)
    if not callable(handler):
        raise KeyboardInterrupt
    handler(sig, frame)


def _reachable(address: str) -> None:
    """A HOST:PORT address must answer within seconds (Ray itself retries for minutes)."""
    import socket
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or "://" in address:
        return   # "auto", "ray://...": left to Ray
    try:
        socket.create_connection((host, int(port)), timeout=10).close()
    except OSError as exc:
        raise RnnlmError(f"cannot reach the Ray head at {address} ({exc.strerror or exc}); "
                         "is `ray start --head` running there?") from None


def _offsets(arrays) -> np.ndarray:
    return np.cumsum([0] + [len(a) for a in arrays]).astype(np.int64)


def _first_line(exc) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")
