"""The training loop: epochs, rnnlm-0.4b's learning-rate schedule with rollback, checkpoints, resume.

Schedule (rnnlm/training/schedule.py; rnnlm-0.4b's by default): after each epoch the validation entropy H is
measured; a worse epoch is rolled back; lr is kept while H improves by more than `min_improvement`,
then halved every epoch; the second failure stops. `patience` and `asgd` (averaged weights) vary it.

Chunks: an epoch is trained in chunks, between which the loop checks the weights, writes checkpoints
and looks at Ctrl-C. Their size adapts to the speed measured on the chunks before (CHUNK_SECONDS
each, at most CHUNK_WORDS words; the first one small), so that a signal is honoured within about
half a second whatever the softmax and vocabulary. Where a chunk ends never changes the arithmetic:
the per-word schedule carries its whole state from chunk to chunk, the batch schedule's windows are
the same, and the sharded per-word schedule (several threads) cuts only between its merge rounds
(every `sync` words of each shard, fixed when training starts).
Checkpoints (`MODEL.ckpt`) hold the weights, the rollback copy, the stream state and the schedule; a
run resumed from any checkpoint ends bit-identical to an uninterrupted one (same seed, same thread
count). Ctrl-C (SIGINT) and SIGTERM stop at the next chunk boundary after writing a checkpoint there
(`TrainingInterrupted`, whose `signum` the CLI turns into the exit status 128 + signum).

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
import math
import os
import signal
import sys
import time

import numpy as np

from rnnlm.kernels import word as KS
from rnnlm.data.windows import Streams, num_windows, shifted
from rnnlm.model.config import ModelConfig, TrainConfig
from rnnlm.errors import RnnlmError
from rnnlm.use.evaluate import stream_logprobs
from rnnlm.model.huffman import build_tree, save_arrays, train_counts
from rnnlm.kernels import hsoftmax as KH
from rnnlm.model.file import ModelFile, Params
from rnnlm.kernels.bundles import make_train
from rnnlm.model.layout import ClassInfo, history_width, net_of, stream_of, tree_of, weights
from rnnlm.runtime import blas_single_thread, check_memory
from rnnlm.training.files import ModelFiles
from rnnlm.training.schedule import Average, Schedule, _learnt, decide
from rnnlm.training.signals import TrainingInterrupted, _SigintFlag  # noqa: F401 (TrainingInterrupted: part of the API)
from rnnlm.training.batch_step import BatchStepper
from rnnlm.training.threads import rnnlm_train_shards

CHUNK_WORDS = 16384    # the largest chunk: words (per-word schedule, of each shard) or windows of this many
CHUNK_SECONDS = 0.25   # what a chunk should take (Ctrl-C waits for the chunk under way)
CHECK_SHARE = 4        # ... or this many times the check of the weights after each chunk, if longer
FIRST_CHUNK = 16       # words of the first chunk of the per-word schedule (its speed is not known yet)
ACC_WINDOWS = 16       # batch schedule: windows per kernel call, their loss summed there (a fixed grid),
ACC_BUDGET = 1e9       # fewer when they would cost more multiply-adds than this (see Trainer._acc_windows)
FIXED_ONE = 2.0 ** 32  # the epoch's training log-probability is summed in units of 1 / FIXED_ONE, exactly


def _fixed_sum(v) -> int | float:
    """The sum of ln p values (an array or one number) in units of 1 / FIXED_ONE, as an exact Python
    int (sums of ints do not depend on how they are grouped, so neither does the epoch's training
    entropy on where its chunks end); NaN if any value is not finite."""
    a = np.asarray(v, dtype=np.float64)
    if not np.isfinite(a).all():
        return float("nan")
    return int(np.rint(a * FIXED_ONE).astype(np.int64).sum(dtype=np.int64))
RNNLM_L2_EVERY = 10   # rnnlm-0.4b applies L2 to the output and hidden weights on every 10th word
LN2 = math.log(2.0)
SYNC_WORDS = 2048     # rnnlm schedule on T threads: words of each shard between merges,
ROUND_BUDGET = 1e9    # fewer when a round would cost more multiply-adds than this (Trainer._sync_words)
MAX_DIVERGENCES = 3   # consecutive divergences before training gives up
EXPLODE_BITS = 1.0    # validation entropy rising by more than this (bits/word) counts as divergence


def rnnlm_depth(bptt: int, block: int) -> int:
    """Steps a sweep unfolds: rnnlm-0.4b stores -bptt T as T + 1 and unfolds bptt + block - 2."""
    return bptt + block - 1


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


class Trainer(ModelFiles):
    """Trains one model; `run()` returns the final ModelFile (also written to `model_path`)."""

    def __init__(self, mcfg: ModelConfig, tcfg: TrainConfig, tokenizer, train_ids, valid_ids,
                 model_path: str, log=None, progress: bool | None = None, checks=None):
        """`train_ids`/`valid_ids` may be read-only memory maps (``prepare``'s cache): they are read
        a chunk at a time, never copied whole. `checks`: their ``rnnlm.data.idcache.IdChecks`` (train,
        valid) when they come from the cache; then every block is verified against its checksum
        before its first use, and the checkpoint's data fingerprint comes from the checksums
        instead of a hash of every id."""
        self.mcfg, self.tcfg, self.tok = mcfg, tcfg, tokenizer
        check_memory(mcfg, tcfg)
        self.train_ids = np.ascontiguousarray(train_ids, dtype=np.int32)   # no copy for int32 maps
        self.valid_ids = np.ascontiguousarray(valid_ids, dtype=np.int32)
        self.train_checks, valid_checks = checks if checks is not None else (None, None)
        if len(self.train_ids) < 2 or len(self.valid_ids) < 1:
            raise RnnlmError("training and validation text must not be empty")
        self.model_path = model_path
        self.ckpt_path = model_path + ".ckpt"
        self.log_path = model_path + ".log.jsonl"
        self.log_entries: list[dict] = []   # MODEL.log.jsonl's lines, written with the model
        self.log = log or (lambda msg: print(msg, flush=True))
        self.progress = _tty(sys.stderr) if progress is None else progress
        self.progress_lines = progress is None and not self.progress
        self.eos = int(tokenizer.eos_id)
        self.classes = ClassInfo.from_tokenizer(tokenizer, mcfg.classes > 0)
        self.hs_arrays, self.hs_meta = {}, {}
        if mcfg.softmax == "hs":   # Huffman tree of the training counts
            if tcfg.threads > 1 and tcfg.schedule != "rnnlm":
                raise RnnlmError("--softmax hs trains --schedule batch on one thread only: give --threads 1")
            if tcfg.cost != "ce":
                raise RnnlmError("--softmax hs trains with --cost ce only")
            self.classes.tree = build_tree(train_counts(self.train_ids, mcfg.vocab_size))
            self.hs_arrays, self.hs_meta = save_arrays(self.classes.tree)
        if mcfg.tie and (tcfg.schedule != "rnnlm" or tcfg.threads > 1 or tcfg.workers):
            raise RnnlmError("--tie trains with --schedule rnnlm on one thread: give --threads 1 (the batch "
                             "schedule and the text shards update the output rows and the embedding apart)")
        if mcfg.classes > 0 and self.classes.num_classes != mcfg.classes:
            raise RnnlmError(f"model has {mcfg.classes} classes but the vocabulary {self.classes.num_classes}")
        if self.train_checks is not None and valid_checks is not None:
            valid_checks.verify_all(self.valid_ids)   # it is read whole at every epoch's end anyway
            self.data_fp = hashlib.sha256((self.train_checks.fingerprint() + valid_checks.fingerprint())
                                          .encode()).hexdigest()[:16]
        else:
            self.data_fp = _fingerprint(self.train_ids, self.valid_ids)
        # the rnnlm schedule on T > 1 threads (or T Ray workers, rnnlm.training.distributed) trains T
        # contiguous shards of the text at once, merged every `sync` words of each shard
        self.shards = (tcfg.workers or tcfg.threads) if tcfg.schedule == "rnnlm" else 1
        sharded = tcfg.schedule == "rnnlm" and (self.shards > 1 or bool(tcfg.workers))
        self.chunk = (max(1, CHUNK_WORDS // self.shards) if tcfg.schedule == "rnnlm"
                      else max(1, CHUNK_WORDS // (tcfg.batch_size * tcfg.bptt)))   # the largest chunk
        self.sync = tcfg.sync_words or min(self._sync_words(), self.chunk)
        if sharded:
            self.chunk = max(self.chunk, self.sync)
        # chunks are whole multiples of `grain` units: the shards' merge rounds (`sync` words each), the
        # batch schedule's groups of windows whose summed loss is one number (ACC_WINDOWS)
        self.grain = ((self.sync if sharded else 1) if tcfg.schedule == "rnnlm"
                      else min(self._acc_windows(), self.chunk))
        self.next_chunk = min(self.chunk, max(self.grain, FIRST_CHUNK if tcfg.schedule == "rnnlm" else 1))
        self.avg_every = max(self.grain, self.chunk // self.grain * self.grain)   # --asgd: units between samples
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
                    tokenizer_kind=getattr(self.tok, "kind", "word"), **self.hs_meta)

    def _word_cost(self) -> float:
        """Multiply-adds of one training word (forward, backward, update; roughly): from the
        configuration only, so that what is sized from it is the same on every run."""
        m = self.mcfg
        V, M = m.vocab_size, m.hidden
        out = {"full": V, "class": m.classes + 2 * V / max(m.classes, 1), "hs": 2 * math.log2(max(V, 2))}[m.softmax]
        return M * (3 * M + 3 * out)

    def _acc_windows(self) -> int:
        """Windows of a grain of the batch schedule: ACC_WINDOWS, fewer when the model is so large
        that they would cost more than ACC_BUDGET multiply-adds (a full softmax over a large
        vocabulary: one window then)."""
        t = self.tcfg
        per_window = t.batch_size * t.bptt * self._word_cost()
        return max(1, min(ACC_WINDOWS, int(ACC_BUDGET // per_window)))

    def _sync_words(self) -> int:
        """Words of each shard between merges (the per-word schedule on several threads or workers,
        whose rounds Ctrl-C waits for): SYNC_WORDS, fewer when a round would cost more than
        ROUND_BUDGET multiply-adds (a full softmax over a large vocabulary: 11 words at V = 300k,
        hidden 100, about half a second; a class softmax on PTB keeps SYNC_WORDS up to hidden 250)."""
        return max(1, min(SYNC_WORDS, int(ROUND_BUDGET // self._word_cost())))

    def _adapt_chunk(self, units: int, seconds: float, check: float) -> None:
        """Size the next chunk from the last one's speed (`units` in `seconds`): CHUNK_SECONDS, or
        CHECK_SHARE times the check of the weights after it (`check` seconds: 80 ms for 60 million
        weights) if that is longer; grain <= size <= chunk."""
        target = max(CHUNK_SECONDS, CHECK_SHARE * check)
        want = units * target / seconds if seconds > 0 else self.chunk
        want = min(self.chunk, int(want))
        self.next_chunk = max(self.grain, want // self.grain * self.grain)

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
        if t.schedule == "rnnlm" and self.train_checks is not None:
            self.train_checks.ensure(self.train_ids, a - 1, b)
        if t.schedule == "rnnlm":
            x, y = shifted(self.train_ids, self.eos, a, b)
            logp = np.empty(b - a, dtype=np.float64)
            w, net, tr, st = weights(params), self._net(), self._train_settings(lr), stream_of(sstate)
            if self.classes.tree is not None:
                KH.hs_train_stream(x, y, w, tree_of(self.classes), net, tr, st, logp)
            else:
                KS.rnnlm_train_stream(x, y, w, net, tr, st, logp)
            return _fixed_sum(logp), b - a
        st, stepper = data
        if self.train_checks is not None:
            self.train_checks.ensure(self.train_ids, a * t.bptt - 1, min(st.L, b * t.bptt),
                                     starts=st.starts)
        lp, n = 0, 0
        with blas_single_thread():   # once for the chunk, not per window
            whole = max(a, min(b, st.L // t.bptt))   # windows a : whole are full length
            for g in range(a, whole, self.grain):   # one call per grain: the loss summed over fixed windows
                X, Y = st.windows(g * t.bptt, min(whole, g + self.grain) - g, t.bptt)
                loss, sstate["h"], sstate["ng"] = stepper.step_windows(X, Y, sstate["h"], sstate["ng"], lr, t.beta,
                                                                       t.clip, 1.0 / t.batch_size)
                lp += _fixed_sum(-loss)
                n += X.size
            for wi in range(whole, b):   # the last, shorter window
                xw, yw = st.window(wi * t.bptt, t.bptt)
                loss, sstate["h"], sstate["ng"] = stepper.step_windows(xw[None], yw[None], sstate["h"], sstate["ng"],
                                                                       lr, t.beta, t.clip, 1.0 / t.batch_size)
                lp += _fixed_sum(-loss)
                n += xw.size
        return lp, n

    def _train_shards(self, params, sstate, lr, a, b, data):
        """Chunk [a, b) of every shard on its own thread (threads.rnnlm_train_shards). The shards'
        replicas of the weights come with the epoch's data: equal to params when the epoch starts,
        and again after every chunk (its last merge writes every weight a shard changed into params
        and every replica), so they are not copied again for each chunk (32 MB at hidden 200)."""
        m = self.mcfg
        starts, lens, reps = data
        n_c = np.clip(lens - a, 0, b - a).astype(np.int64)
        if self.train_checks is not None:
            self.train_checks.ensure(self.train_ids, a - 1, b, starts=starts)
        X = np.zeros((self.shards, b - a), np.int32)   # shard s's words a : b (zeros past its end)
        Y = np.zeros((self.shards, b - a), np.int32)
        for s in range(self.shards):
            if n_c[s]:
                X[s, :n_c[s]], Y[s, :n_c[s]] = shifted(self.train_ids, self.eos, int(starts[s]) + a,
                                                       int(starts[s]) + a + int(n_c[s]))
        logp = np.zeros((self.shards, b - a), dtype=np.float64)
        rnnlm_train_shards(X, Y, n_c, self.sync, params.flat, reps, m.vocab_size, m.hidden, m.classes, m.direct_size,
                           self._net(), self._train_settings(lr), stream_of(sstate), logp,
                           tree=tree_of(self.classes))
        return _fixed_sum(logp), int(n_c.sum())

    def _net(self):
        """The kernels' Net of the model being trained."""
        return net_of(self.mcfg, self.classes, self.tcfg.independent, self.eos)

    def _train_settings(self, lr):
        """The per-word schedule's step settings (kernels.bundles.Train) at learning rate lr."""
        t = self.tcfg
        return make_train(lr, t.beta, t.clip, t.bptt_block, self.mcfg.bias, RNNLM_L2_EVERY, t.dropout_input,
                          t.dropout, self.drop_seed)

    def _epoch_data(self, params):
        """What an epoch reads besides `train_ids` (sliced per chunk, never copied whole)."""
        t = self.tcfg
        if t.schedule == "rnnlm" and self.shards > 1:
            T, L, n = self.shards, self._units(), len(self.train_ids)
            starts = np.arange(T, dtype=np.int64) * L     # contiguous shards; the last may be shorter
            lens = np.clip(n - starts, 0, L).astype(np.int64)
            return starts, lens, np.ascontiguousarray(np.broadcast_to(params.flat, (T, params.flat.size)))
        if t.schedule == "rnnlm":
            return None
        st = Streams(self.train_ids, self.eos, t.batch_size)
        stepper = BatchStepper(params, self.classes, self.mcfg.activation_code, t.cost_code, t.independent,
                               self.eos, self.mcfg.reset_hidden, threads=t.threads)
        return st, stepper

    # ------------------------------------------------------------------ main loop
    def run(self, resume: bool = False) -> ModelFile:
        t = self.tcfg
        if t.asgd:
            from rnnlm.model.file import param_shapes
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
            self._ensure_rollback(saved)   # now, not in the first checkpoint (Ctrl-C writes the weights once)
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
            # a tqdm bar on a terminal (progress=True); otherwise (progress=None) a plain line on
            # stderr every $RNNLM_PROGRESS_SECONDS (30) s, so that a long epoch shows in a log
            bar = None
            if self.progress or self.progress_lines:
                from rnnlm.data.stream import Progress
                bar = Progress(f"epoch {sched.epoch + 1}", units, bar=self.progress,
                               unit="words" if t.schedule == "rnnlm" else "windows")
                bar.update(sched.position)
            t0 = time.perf_counter()
            words0 = sched.train_tokens
            while sched.position < units:
                a = sched.position
                b = min(units, a // self.grain * self.grain + self.next_chunk)
                if sched.averaging:   # --asgd takes the weights at fixed points: the chunk size adapts to speed
                    b = min(b, (a // self.avg_every + 1) * self.avg_every)
                c0 = time.perf_counter()
                lp, n = self._train_chunk(params, sstate, sched.lr, a, b, data)
                c1 = time.perf_counter()
                finite = math.isfinite(lp) and np.isfinite(params.flat).all()
                self._adapt_chunk(b - a, c1 - c0, time.perf_counter() - c1)
                if not finite:
                    break
                sched.train_logprob_fixed += lp
                sched.train_tokens += n
                sched.position = b
                if sched.averaging and (b % self.avg_every == 0 or b == units):
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
        logprob = sched.train_logprob + sched.train_logprob_fixed / FIXED_ONE
        train = float(-logprob / max(sched.train_tokens, 1) / LN2)
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
        sched.train_logprob, sched.train_logprob_fixed, sched.train_tokens = 0.0, 0, 0
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
        sched.train_logprob, sched.train_logprob_fixed, sched.train_tokens = 0.0, 0, 0
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
