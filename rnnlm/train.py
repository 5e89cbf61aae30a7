"""The training loop: epochs, rnnlm-0.4b's learning-rate schedule with rollback, checkpoints, resume.

Schedule (rnnlm/schedule.py; rnnlm-0.4b's by default): after each epoch the validation entropy H is
measured; a worse epoch is rolled back; lr is kept while H improves by more than `min_improvement`,
then halved every epoch; the second failure stops. `patience` and `asgd` (averaged weights) vary it.

Checkpoints (`MODEL.ckpt`) hold the weights, the rollback copy, the stream state and the schedule; they
are written at fixed positions (multiples of the chunk size) so that a run resumed from any checkpoint
ends bit-identical to an uninterrupted one (same seed, same thread count). Ctrl-C (SIGINT) and SIGTERM
stop at the next chunk boundary after writing a checkpoint there (`TrainingInterrupted`, whose
`signum` the CLI turns into the exit status 128 + signum).

Companion files: `MODEL.log.jsonl` (one JSON line per epoch) and `MODEL.png` (learning curve) are
rewritten, atomically, each time MODEL is: until a run has written its first model, the previous
model's three files stay as they were. The epoch lines travel in the checkpoint, so `--resume`
continues the same log.

Divergence: a chunk with a non-finite loss or non-finite weights, or an epoch whose validation
entropy is not finite or jumps by more than EXPLODE_BITS, is rolled back to the last good weights and
restarted with the learning rate lowered (lr *= lr_decay); after MAX_DIVERGENCES in a row training
stops with a clear error. No non-finite weight is ever written to the model file.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import signal
import sys
import time
import numpy as np

from rnnlm.kernels import seq as KS
from rnnlm.batching import inputs_targets, num_windows, streams, window, windows
from rnnlm.config import ModelConfig, TrainConfig
from rnnlm.errors import RnnlmError
from rnnlm.evaluate import stream_logprobs
from rnnlm.model import ModelFile, Params, load_model, save_model
from rnnlm.schedule import Average, Schedule, decide
from rnnlm.textio import atomic_write, atomic_write_bytes
from rnnlm.step import BatchStepper, ClassInfo, blas_single_thread, history_width, param_args
from rnnlm.threads import rnnlm_train_shards

CHUNK_WORDS = 16384
RNNLM_L2_EVERY = 10   # rnnlm-0.4b applies L2 to the output and hidden weights on every 10th word
LN2 = math.log(2.0)
SYNC_WORDS = 2048     # rnnlm schedule on T threads: words of each shard between merges
MAX_DIVERGENCES = 3   # consecutive divergences before training gives up
EXPLODE_BITS = 1.0    # validation entropy rising by more than this (bits/word) counts as divergence


class TrainingInterrupted(RnnlmError):
    """SIGINT or SIGTERM during training: a checkpoint was written; `rnnlm train ... --resume`
    continues. `signum` is the signal that stopped it."""

    def __init__(self, msg: str, signum: int = signal.SIGINT):
        super().__init__(msg)
        self.signum = int(signum)


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _SigintFlag:
    """Turns SIGINT and SIGTERM into a flag checked at chunk boundaries (where the state is
    consistent); `signum` remembers which one came first."""

    def __init__(self):
        self.hit = False
        self.signum = None
        self._old = {}

    def __enter__(self):
        for sig in STOP_SIGNALS:
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:   # not the main thread: leave the signals alone
                pass
        return self

    def _handle(self, signum, frame):
        if self.hit:         # a second signal stops at once
            raise KeyboardInterrupt
        self.hit, self.signum = True, signum

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old = {}
        return False


def training_bytes(mcfg: ModelConfig, tcfg: TrainConfig) -> tuple[int, int]:
    """(parameter count, bytes a training run holds at its peak, estimated): the weights, their
    rollback copy and the gradient or checkpoint copy, one replica per text shard (the rnnlm schedule
    on T threads), the float64 draws that initialise the largest block, and --asgd's sums."""
    from rnnlm.model import param_shapes
    sizes = [int(np.prod(s)) for _, s in param_shapes(mcfg)]
    n = sum(sizes)
    shards = tcfg.threads if tcfg.schedule == "rnnlm" and tcfg.threads > 1 else 0
    avg = 16 * n if tcfg.asgd else 0   # --asgd: the float64 running sum and its kept copy
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


def check_memory(mcfg: ModelConfig, tcfg: TrainConfig) -> None:
    """Refuse, in one line with the figures, a model that cannot fit in the memory available."""
    n, need = training_bytes(mcfg, tcfg)
    avail = available_memory()
    if avail is not None and need > avail:
        raise RnnlmError(f"a model of {n:,} parameters (vocabulary {mcfg.vocab_size:,}, hidden {mcfg.hidden:,}) "
                         f"needs about {need / 2**30:.1f} GiB to train, more than the {avail / 2**30:.1f} GiB "
                         f"of memory available; use a smaller --hidden or vocabulary")


def rnnlm_depth(bptt: int, block: int) -> int:
    """Steps a sweep unfolds: rnnlm-0.4b stores -bptt T as T + 1 and unfolds bptt + block - 2."""
    return bptt + block - 1


def _learnt(sched: Schedule) -> bool:
    """At least one epoch ended without diverging (so MODEL holds something learnt)."""
    return any(not h.get("diverged") for h in sched.history)


def _fingerprint(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def _tty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class Trainer:
    """Trains one model; `run()` returns the final ModelFile (also written to `model_path`)."""

    def __init__(self, mcfg: ModelConfig, tcfg: TrainConfig, tokenizer, train_ids, valid_ids,
                 model_path: str, log=None, progress: bool | None = None):
        self.mcfg, self.tcfg, self.tok = mcfg, tcfg, tokenizer
        check_memory(mcfg, tcfg)
        self.train_ids = np.ascontiguousarray(train_ids, dtype=np.int32)
        self.valid_ids = np.ascontiguousarray(valid_ids, dtype=np.int32)
        if len(self.train_ids) < 2 or len(self.valid_ids) < 1:
            raise RnnlmError("training and validation text must not be empty")
        self.model_path = model_path
        self.ckpt_path = model_path + ".ckpt"
        self.log_path = model_path + ".log.jsonl"
        self.log_entries: list[dict] = []   # MODEL.log.jsonl's lines, written with the model
        self.log = log or (lambda msg: print(msg, flush=True))
        self.progress = _tty(sys.stderr) if progress is None else progress
        self.eos = int(tokenizer.eos_id)
        self.classes = ClassInfo.from_tokenizer(tokenizer, mcfg.classes > 0)
        if mcfg.classes > 0 and self.classes.num_classes != mcfg.classes:
            raise RnnlmError(f"model has {mcfg.classes} classes but the vocabulary {self.classes.num_classes}")
        self.data_fp = _fingerprint(self.train_ids, self.valid_ids)
        # the rnnlm schedule on T > 1 threads trains T contiguous shards of the text at once
        self.shards = tcfg.threads if tcfg.schedule == "rnnlm" else 1
        self.chunk = (max(1, CHUNK_WORDS // self.shards) if tcfg.schedule == "rnnlm"
                      else max(1, CHUNK_WORDS // (tcfg.batch_size * tcfg.bptt)))
        self.stop_after_chunks = None   # tests: simulate a kill after this many chunks
        self.drop_seed = 0              # dropout masks' seed, set for each epoch by the training loop
        self.avg = None                 # Average (--asgd), made by run()

    # ------------------------------------------------------------------ state
    def _fresh_stream_state(self):
        M, dt = self.mcfg.hidden, np.dtype(self.mcfg.dtype)
        ng = np.full(history_width(self.mcfg.direct_order), self.eos, np.int32)
        if self.tcfg.schedule == "rnnlm":
            D = rnnlm_depth(self.tcfg.bptt, self.tcfg.bptt_block)
            st = dict(h=np.full(M, self.mcfg.init_hidden, dt), hist=np.full(D + 1, -1, np.int32),
                      hs=np.zeros((D + 1, M), dt), err=np.zeros((D + 1, M), dt),
                      istate=np.zeros(2, np.int64), ng=ng)
            if self.shards > 1:   # one stream state per shard
                st = {k: np.ascontiguousarray(np.broadcast_to(v, (self.shards,) + v.shape)) for k, v in st.items()}
            return st
        B = self.tcfg.batch_size
        return dict(h=np.full((B, M), self.mcfg.init_hidden, dt), ng=np.tile(ng, (B, 1)))

    def _meta(self, sched: Schedule) -> dict:
        return dict(train=self.tcfg.to_dict(), history=sched.history,
                    tokenizer_kind=getattr(self.tok, "kind", "word"))

    def _save_checkpoint(self, params, saved, sched, sstate):
        meta = self._meta(sched)
        meta["checkpoint"] = dict(schedule={k: v for k, v in sched.__dict__.items() if k != "history"},
                                  data=self.data_fp, log=self.log_entries)
        arrays = {"saved": saved.flat, **{f"stream_{k}": v for k, v in sstate.items()}}
        if self.avg is not None:
            arrays.update(avg_sum=self.avg.sum, saved_avg_sum=self.avg.saved_sum)
        save_model(self.ckpt_path, ModelFile(self.mcfg, params, self.tok.to_bytes(), meta, arrays))

    def _load_checkpoint(self):
        mf = load_model(self.ckpt_path)
        ck = mf.meta.get("checkpoint")
        if ck is None:
            raise RnnlmError(f"{self.ckpt_path}: not a training checkpoint")
        if ck["data"] != self.data_fp:
            raise RnnlmError(f"{self.ckpt_path}: was made with other training/validation data; "
                             "resume with the same files or start afresh without --resume")
        if mf.config != self.mcfg or TrainConfig.from_dict(mf.meta["train"]) != self.tcfg:
            raise RnnlmError(f"{self.ckpt_path}: was made with other model/training options")
        try:
            sched = Schedule(**ck["schedule"], history=mf.meta["history"])
            saved = Params(self.mcfg, mf.arrays["saved"].copy())
        except (TypeError, KeyError, RnnlmError) as exc:
            raise RnnlmError(f"{self.ckpt_path}: damaged checkpoint ({exc})") from None
        log = ck.get("log", [])
        if not (isinstance(log, list) and all(isinstance(e, dict) for e in log)):
            raise RnnlmError(f"{self.ckpt_path}: damaged checkpoint (epoch log)")
        self.log_entries = list(log)
        sstate = {k[len("stream_"):]: v.copy() for k, v in mf.arrays.items() if k.startswith("stream_")}
        fresh = self._fresh_stream_state()
        if (set(sstate) != set(fresh) or not np.isfinite(saved.flat).all()
                or any(sstate[k].shape != v.shape or sstate[k].dtype != v.dtype for k, v in fresh.items())
                or not all(np.isfinite(v).all() for v in sstate.values())):
            raise RnnlmError(f"{self.ckpt_path}: damaged checkpoint (training state arrays)")
        params = Params(self.mcfg, mf.params.flat.copy())
        if self.avg is not None:
            for k in ("sum", "saved_sum"):
                a = mf.arrays.get(f"avg_{k}" if k == "sum" else "saved_avg_sum")
                if a is None or a.shape != saved.flat.shape or a.dtype != np.float64 or not np.isfinite(a).all():
                    raise RnnlmError(f"{self.ckpt_path}: damaged checkpoint (weight average)")
                setattr(self.avg, k, a.copy())
        return params, saved, sched, sstate

    # ------------------------------------------------------------------ one epoch
    def _units(self) -> int:
        if self.tcfg.schedule == "rnnlm":
            return -(-len(self.train_ids) // self.shards)   # words of the longest shard
        L = len(self.train_ids) // self.tcfg.batch_size
        return num_windows(L, self.tcfg.bptt)

    def _train_chunk(self, params, sstate, lr, a, b, data):
        t = self.tcfg
        if t.schedule == "rnnlm" and self.shards > 1:
            return self._train_shards(params, sstate, lr, a, b, data)
        if t.schedule == "rnnlm":
            x, y = data
            logp = np.empty(b - a, dtype=np.float64)
            KS.rnnlm_train_stream(x[a:b], y[a:b], *param_args(params), self.classes.word_class,
                                 self.classes.class_starts, self.mcfg.activation_code, lr, t.beta, t.clip,
                                 t.bptt_block, t.independent, self.eos, self.mcfg.reset_hidden,
                                 self.mcfg.direct_order, self.mcfg.bias, RNNLM_L2_EVERY,
                                 t.dropout_input, t.dropout, self.drop_seed, sstate["h"], sstate["hist"],
                                 sstate["hs"], sstate["err"], sstate["ng"],
                                 sstate["istate"], logp)
            return float(logp.sum()), b - a
        xs, ys, stepper = data
        lp, n = 0.0, 0
        with blas_single_thread():   # once for the chunk, not per window
            whole = max(a, min(b, xs.shape[1] // t.bptt))   # windows a : whole are full length
            if whole > a:
                X, Y = windows(xs, ys, a * t.bptt, whole - a, t.bptt)
                loss, sstate["h"], sstate["ng"] = stepper.step_windows(X, Y, sstate["h"], sstate["ng"], lr, t.beta,
                                                                       t.clip, 1.0 / t.batch_size)
                lp -= loss
                n += X.size
            for wi in range(whole, b):   # the last, shorter window
                xw, yw = window(xs, ys, wi * t.bptt, t.bptt)
                loss, sstate["h"], sstate["ng"] = stepper.step_windows(xw[None], yw[None], sstate["h"], sstate["ng"],
                                                                       lr, t.beta, t.clip, 1.0 / t.batch_size)
                lp -= loss
                n += xw.size
        return lp, n

    def _train_shards(self, params, sstate, lr, a, b, data):
        """Chunk [a, b) of every shard on its own thread (threads.rnnlm_train_shards). The shards'
        replicas of the weights come with the epoch's data: equal to params when the epoch starts,
        and again after every chunk (its last merge writes every weight a shard changed into params
        and every replica), so they are not copied again for each chunk (32 MB at hidden 200)."""
        t, m = self.tcfg, self.mcfg
        X, Y, lens, reps = data
        n_c = np.clip(lens - a, 0, b - a).astype(np.int64)
        logp = np.zeros((self.shards, b - a), dtype=np.float64)
        rnnlm_train_shards(np.ascontiguousarray(X[:, a:b]), np.ascontiguousarray(Y[:, a:b]), n_c,
                              min(SYNC_WORDS, b - a), params.flat, reps, m.vocab_size, m.hidden, m.classes,
                              m.direct_size, self.classes.word_class, self.classes.class_starts,
                              m.activation_code, lr, t.beta, t.clip, t.bptt_block, t.independent, self.eos,
                              m.reset_hidden, m.direct_order, m.bias, RNNLM_L2_EVERY, t.dropout_input, t.dropout,
                              self.drop_seed, sstate["h"], sstate["hist"],
                              sstate["hs"], sstate["err"], sstate["ng"], sstate["istate"], logp)
        return float(logp.sum()), int(n_c.sum())

    def _epoch_data(self, params):
        t = self.tcfg
        if t.schedule == "rnnlm" and self.shards > 1:
            x, y = inputs_targets(self.train_ids, self.eos)
            T, L = self.shards, self._units()
            X = np.zeros((T, L), np.int32)
            Y = np.zeros((T, L), np.int32)
            lens = np.zeros(T, np.int64)
            for s in range(T):   # contiguous shards; the last may be shorter
                xs, ys = x[s * L:(s + 1) * L], y[s * L:(s + 1) * L]
                X[s, :len(xs)], Y[s, :len(ys)], lens[s] = xs, ys, len(xs)
            return X, Y, lens, np.ascontiguousarray(np.broadcast_to(params.flat, (T, params.flat.size)))
        if t.schedule == "rnnlm":
            return inputs_targets(self.train_ids, self.eos)
        xs, ys, _ = streams(self.train_ids, self.eos, t.batch_size)
        stepper = BatchStepper(params, self.classes, self.mcfg.activation_code, t.cost_code, t.independent,
                               self.eos, self.mcfg.reset_hidden, threads=t.threads)
        return xs, ys, stepper

    # ------------------------------------------------------------------ main loop
    def run(self, resume: bool = False) -> ModelFile:
        t = self.tcfg
        if t.asgd:
            from rnnlm.model import param_shapes
            self.avg = Average(sum(int(np.prod(s)) for _, s in param_shapes(self.mcfg)))
        if resume:
            if not os.path.exists(self.ckpt_path):
                raise RnnlmError(f"{self.ckpt_path}: no checkpoint to resume from")
            params, saved, sched, sstate = self._load_checkpoint()
            self.log(f"resuming from {self.ckpt_path}: epoch {sched.epoch + 1}, position {sched.position}")
        else:
            params = Params.init(self.mcfg, np.random.default_rng(t.seed))
            saved = params.copy()
            sched, sstate = Schedule(lr=t.lr), self._fresh_stream_state()
        with _SigintFlag() as sigint:
            return self._loop(params, saved, sched, sstate, sigint)

    def _loop(self, params, saved, sched, sstate, sigint) -> ModelFile:
        t = self.tcfg
        chunks_done = 0
        words_since_ckpt = 0
        mf = None
        while not sched.done:
            # dropout masks: fresh for every epoch (and every retry of one), the same on --resume
            self.drop_seed = (t.seed * 1_000_003 + len(sched.history) * 7_919 + 1) % (1 << 62)
            units = self._units()
            data = self._epoch_data(params)
            bar = None
            if self.progress:
                from tqdm import tqdm
                bar = tqdm(total=units, initial=sched.position, file=sys.stderr, leave=False,
                           desc=f"epoch {sched.epoch + 1}", unit="w" if t.schedule == "rnnlm" else "win")
            t0 = time.perf_counter()
            words0 = sched.train_tokens
            while sched.position < units:
                a = sched.position
                b = min(units, (a // self.chunk + 1) * self.chunk)
                lp, n = self._train_chunk(params, sstate, sched.lr, a, b, data)
                if not (math.isfinite(lp) and np.isfinite(params.flat).all()):
                    break
                sched.train_logprob += lp
                sched.train_tokens += n
                sched.position = b
                if sched.averaging:
                    self.avg.add(sched, params.flat)
                words_since_ckpt += n
                if bar is not None:
                    bar.update(b - a)
                if t.checkpoint_words and words_since_ckpt >= t.checkpoint_words and b < units:
                    self._save_checkpoint(params, saved, sched, sstate)
                    words_since_ckpt = 0
                chunks_done += 1
                if self.stop_after_chunks is not None and chunks_done >= self.stop_after_chunks:
                    raise KeyboardInterrupt
                if sigint.hit:
                    self._save_checkpoint(params, saved, sched, sstate)
                    if bar is not None:
                        bar.close()
                    name = signal.Signals(sigint.signum).name
                    raise TrainingInterrupted(
                        f"interrupted ({name}): checkpoint {self.ckpt_path} written (epoch {sched.epoch + 1}, "
                        f"{sched.position:,} of {units:,} {'words' if t.schedule == 'rnnlm' else 'windows'}); "
                        f"continue with the same command and --resume", sigint.signum)
            seconds = time.perf_counter() - t0
            if bar is not None:
                bar.close()
            if sched.position < units:
                self._diverged(params, saved, sched, "a non-finite training loss")
            else:
                self._end_epoch(params, saved, sched, seconds, sched.train_tokens - words0)
            sstate = self._fresh_stream_state()
            self._save_checkpoint(params, saved, sched, sstate)
            words_since_ckpt = 0
            if _learnt(sched):   # a run whose every epoch diverged leaves MODEL alone
                mf = self._write_model(saved, sched)
        return mf if mf is not None else self._write_model(saved, sched)

    def _end_epoch(self, params, saved, sched: Schedule, seconds: float, words: int):
        t = self.tcfg
        averaged = bool(sched.averaging and sched.avg_chunks)
        judged = Params(self.mcfg, Average.mean(self.avg.sum, sched.avg_chunks, params.flat.dtype)) if averaged else params
        lp = stream_logprobs(self.mcfg, judged, self.classes, self.valid_ids, self.eos, t.independent)
        valid = float(-lp.sum() / len(lp) / LN2)
        train = float(-sched.train_logprob / max(sched.train_tokens, 1) / LN2)
        if not math.isfinite(valid) or (sched.last_valid is not None
                                        and valid > sched.last_valid + EXPLODE_BITS):
            self._diverged(params, saved, sched, f"validation entropy {valid:.4g} bits")
            return
        sched.failures = 0
        lr_used = sched.lr
        d = decide(sched, valid, t.min_improvement, t.patience, t.asgd)
        if d.restore:
            params.flat[:] = saved.flat
            if self.avg is not None:
                self.avg.restore(sched)
        elif d.keep:
            saved.flat[:] = params.flat
            if self.avg is not None:
                self.avg.keep(sched)
        if d.event == "average":   # the average starts from the weights the schedule goes on from
            self.avg.restart(sched)
            self.avg.keep(sched)
        if sched.halving and not sched.done:
            sched.lr *= t.lr_decay
        sched.epoch += 1
        sched.position = 0
        if sched.epoch >= t.max_epochs:
            sched.done = True
        entry = dict(epoch=sched.epoch, lr=lr_used, train_entropy=train, valid_entropy=valid,
                     train_ppl=2.0 ** train, valid_ppl=2.0 ** valid, rolled_back=d.restore)
        if t.patience > 1:
            entry["kept"] = d.keep
        if t.asgd:
            entry["averaged"] = averaged
        if d.event:
            entry["event"] = d.event
        sched.history.append(entry)
        sched.train_logprob, sched.train_tokens = 0.0, 0
        wps = words / seconds if seconds > 0 else float("nan")
        notes = (["averaged"] if averaged else []) + (["rolled back"] if d.restore else []) \
            + (["not kept"] if t.patience > 1 and not d.keep and not d.restore else []) \
            + ([{"average": "averaging starts", "halve": "halving starts", "stop": "stop"}[d.event]] if d.event else [])
        self.log(f"epoch {sched.epoch:3d}  lr {lr_used:.6g}  train {train:.4f} bits (ppl {2 ** train:.2f})  "
                 f"valid {valid:.4f} bits (ppl {2 ** valid:.2f})  {wps:,.0f} words/s  {seconds:.1f} s"
                 + "".join(f"  [{x}]" for x in notes))
        self.log_entries.append(dict(entry, words_per_second=wps, seconds=seconds))

    def _diverged(self, params, saved, sched: Schedule, what: str) -> None:
        """Roll back to the last good weights, lower the rate, restart the epoch (or give up)."""
        params.flat[:] = saved.flat
        if self.avg is not None:
            self.avg.restore(sched)
        sched.failures += 1
        lr_used = sched.lr
        sched.lr *= self.tcfg.lr_decay
        sched.position = 0
        sched.train_logprob, sched.train_tokens = 0.0, 0
        entry = dict(epoch=sched.epoch + 1, lr=lr_used, diverged=what, rolled_back=True)
        sched.history.append(entry)
        self.log_entries.append(entry)
        self.log(f"epoch {sched.epoch + 1:3d}  lr {lr_used:.6g}  diverged ({what}): rolled back, "
                 f"restarting the epoch with lr {sched.lr:.6g}")
        if sched.failures >= MAX_DIVERGENCES:
            if _learnt(sched):   # a good epoch to keep
                self._write_model(saved, sched)
                kept = f"{self.model_path} holds the last good weights"
            else:   # nothing learnt: whatever MODEL was (a previous model, or nothing) stays
                kept = f"no epoch completed, {self.model_path} was not written"
            raise RnnlmError(f"training diverged {sched.failures} times in a row (last lr {lr_used:g}); "
                             f"{kept}; try a smaller --lr or --clip")

    def _write_model(self, saved, sched) -> ModelFile:
        """MODEL (the kept weights, or their average with --asgd once it has started), then its log
        and learning curve, each atomically. A failure is one line that names the file and says that
        the checkpoint (written just before) keeps the work."""
        params = saved
        if self.avg is not None and sched.saved_avg_chunks:
            params = Params(self.mcfg, Average.mean(self.avg.saved_sum, sched.saved_avg_chunks, saved.flat.dtype))
        mf = ModelFile(self.mcfg, params, self.tok.to_bytes(), self._meta(sched))
        try:
            save_model(self.model_path, mf)
            text = "".join(json.dumps(e) + "\n" for e in self.log_entries)
            atomic_write_bytes(self.log_path, text.encode("utf-8"))
            self._plot(sched.history)
        except RnnlmError as exc:
            kept = (f"; the training state is in {self.ckpt_path} (continue with --resume)"
                    if os.path.exists(self.ckpt_path) else "")
            raise RnnlmError(f"{exc}{kept}") from None
        return mf

    def _plot(self, history):
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            return
        history = [h for h in history if not h.get("diverged")]
        ep = [h["epoch"] for h in history]
        fig, ax = plt.subplots(figsize=(5, 3.2))
        ax.plot(ep, [h["train_ppl"] for h in history], "o-", label="train")
        ax.plot(ep, [h["valid_ppl"] for h in history], "s-", label="valid")
        ax.set_xlabel("epoch"); ax.set_ylabel("perplexity"); ax.set_yscale("log"); ax.legend()
        ax.set_title(os.path.basename(self.model_path))
        fig.tight_layout()
        try:
            atomic_write(self.model_path + ".png", lambda fh: fig.savefig(fh, format="png", dpi=100))
        finally:
            plt.close(fig)
