"""What a training run writes and reads back: the checkpoint (weights, stream state, schedule,
epoch log, and a reference to the rollback copy), and the model with its log and learning curve
(each atomically; a failure is one line that names the checkpoint that keeps the work). A mixin of
training.loop.Trainer.

The rollback copy (the weights last kept, and with --asgd the kept sum of the average) changes only
at the end of an epoch, yet it is as large as the weights: it lives beside the checkpoint in
`MODEL.ckpt.rollback0` or `MODEL.ckpt.rollback1` and is written only when it changed, so that the
checkpoint written on Ctrl-C or SIGTERM in mid-epoch holds the weights once, not twice (at V = 300k,
hidden 100: 245 MB instead of 490). The checkpoint names its rollback file and that file's CRC-32.
A new rollback copy goes to the slot the checkpoint on disk does not name, then the checkpoint is
replaced, then the other slot is removed: a run killed at any point leaves a checkpoint whose
rollback file is whole and matches (tests/test_train.py kills it at each write).
"""
from __future__ import annotations

import json
import os
import zlib

import numpy as np

from rnnlm.data.text import atomic_write, atomic_write_bytes, display_name
from rnnlm.errors import RnnlmError
from rnnlm.model.config import TrainConfig
from rnnlm.model.file import ModelFile, Params, load_model, save_model
from rnnlm.training.schedule import Average, Schedule


ROLLBACK_SUFFIXES = (".rollback0", ".rollback1")   # after MODEL.ckpt: the rollback copy's two slots


def _crc(arrays: dict) -> int:
    crc = 0
    for k in sorted(arrays):
        crc = zlib.crc32(memoryview(np.ascontiguousarray(arrays[k])).cast("B"), crc)
    return crc


class ModelFiles:
    """Trainer's file I/O (uses its mcfg, tcfg, tok, paths, data fingerprint, log entries)."""

    _rollback = None   # (slot, crc) of the rollback file last written or resumed from (the next checkpoint names it)

    def _rollback_arrays(self, saved) -> dict:
        arrays = {"saved": saved.flat}
        if self.avg is not None:   # --asgd: the kept copy of the running sum
            arrays["saved_avg_sum"] = self.avg.saved_sum
        return arrays

    def _rollback_path(self, slot: int) -> str:
        return self.ckpt_path + ROLLBACK_SUFFIXES[slot]

    def _ensure_rollback(self, saved) -> tuple[int, int, int]:
        """(slot, CRC-32, bytes) of a rollback file that holds `saved`: the one last written or
        named by the checkpoint on disk if it still matches, else a new one in the other slot.
        Training calls this once before its first chunk, so that a checkpoint written on Ctrl-C in
        the first epoch holds the weights once too."""
        rollback = self._rollback_arrays(saved)
        crc = _crc(rollback)
        written = self._rollback if self._rollback is not None else self._named_on_disk()
        if written is None or written[1] != crc:   # changed since the checkpoint on disk: the other slot
            slot = 0 if written is None else 1 - written[0]
            atomic_write(self._rollback_path(slot), lambda fh: np.savez(fh, **rollback))
        else:
            slot = written[0]
        self._rollback = (slot, crc)
        return slot, crc, sum(int(a.nbytes) for a in rollback.values())

    def _save_checkpoint(self, params, saved, sched, sstate):
        slot, crc, size = self._ensure_rollback(saved)
        meta = self._meta(sched)
        meta["checkpoint"] = dict(schedule={k: v for k, v in sched.__dict__.items() if k != "history"},
                                  data=self.data_fp, log=self.log_entries,
                                  rollback=dict(file=os.path.basename(self._rollback_path(slot)), crc32=crc,
                                                bytes=size))
        arrays = {**{f"stream_{k}": v for k, v in sstate.items()}, **self.hs_arrays}
        if self.avg is not None:   # --asgd: the running sum of the weights
            arrays.update(avg_sum=self.avg.sum)
        save_model(self.ckpt_path, ModelFile(self.mcfg, params, self.tok.to_bytes(), meta, arrays))
        stale = self._rollback_path(1 - slot)
        if os.path.exists(stale):
            try:
                os.unlink(stale)
            except OSError:
                pass

    def _named_on_disk(self):
        """(slot, None) of the rollback file an existing checkpoint (another run's, being replaced)
        names, read from its metadata alone; None if there is none or it names none."""
        if not os.path.exists(self.ckpt_path):
            return None
        try:
            with np.load(self.ckpt_path, allow_pickle=False) as z:
                ref = json.loads(bytes(z["meta"]).decode("utf-8"))["checkpoint"]["rollback"]["file"]
            return [os.path.basename(self._rollback_path(s)) for s in (0, 1)].index(ref), None
        except Exception:   # not a checkpoint of this kind, or unreadable: nothing to keep apart from
            return None

    def _load_rollback(self, ck: dict, arrays: dict) -> dict:
        """The rollback arrays a checkpoint names (checkpoints before the rollback files carry them
        inside: `saved`, `saved_avg_sum`)."""
        ref = ck.get("rollback")
        if ref is None:
            return {k: arrays[k] for k in ("saved", "saved_avg_sum") if k in arrays}
        names = [os.path.basename(self._rollback_path(s)) for s in (0, 1)]
        if not isinstance(ref, dict) or ref.get("file") not in names:
            raise RnnlmError(f"{self.ckpt_path}: damaged checkpoint (rollback reference)")
        slot = names.index(ref["file"])
        path = self._rollback_path(slot)
        shown = display_name(path)
        if not os.path.exists(path):
            raise RnnlmError(f"{self.ckpt_path}: damaged checkpoint: its rollback copy {shown} is missing")
        try:
            with np.load(path, allow_pickle=False) as z:
                out = {k: z[k] for k in z.files}
        except Exception as exc:   # a damaged archive: zipfile/format errors of many kinds
            raise RnnlmError(f"{self.ckpt_path}: damaged checkpoint: its rollback copy {shown} cannot be "
                             f"read ({type(exc).__name__})") from None
        if _crc(out) != ref.get("crc32"):
            raise RnnlmError(f"{self.ckpt_path}: damaged checkpoint: its rollback copy {shown} does not "
                             "match it (CRC-32)")
        self._rollback = (slot, ref["crc32"])
        return out

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
        rollback = self._load_rollback(ck, mf.arrays)
        try:
            sched = Schedule(**ck["schedule"], history=mf.meta["history"])
            saved = Params(self.mcfg, rollback["saved"].copy())
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
                a = mf.arrays.get("avg_sum") if k == "sum" else rollback.get("saved_avg_sum")
                if a is None or a.shape != saved.flat.shape or a.dtype != np.float64 or not np.isfinite(a).all():
                    raise RnnlmError(f"{self.ckpt_path}: damaged checkpoint (weight average)")
                setattr(self.avg, k, a.copy())
        return params, saved, sched, sstate

    def _write_model(self, saved, sched) -> ModelFile:
        """MODEL (the kept weights, or their average with --asgd once it has started), then its log
        and learning curve, each atomically. A failure is one line that names the file and says that
        the checkpoint (written just before) keeps the work."""
        params = saved
        if self.avg is not None and sched.saved_avg_chunks:
            params = Params(self.mcfg, Average.mean(self.avg.saved_sum, sched.saved_avg_chunks, saved.flat.dtype))
        mf = ModelFile(self.mcfg, params, self.tok.to_bytes(), self._meta(sched), dict(self.hs_arrays),
                       self.classes.tree)
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
