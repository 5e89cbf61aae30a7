"""What a training run writes and reads back: the checkpoint (weights, rollback copy, stream state,
schedule, epoch log), and the model with its log and learning curve (each atomically; a failure is
one line that names the checkpoint that keeps the work). A mixin of training.loop.Trainer."""
from __future__ import annotations

import json
import os

import numpy as np

from rnnlm.data.text import atomic_write, atomic_write_bytes
from rnnlm.errors import RnnlmError
from rnnlm.model.config import TrainConfig
from rnnlm.model.file import ModelFile, Params, load_model, save_model
from rnnlm.training.schedule import Average, Schedule


class ModelFiles:
    """Trainer's file I/O (uses its mcfg, tcfg, tok, paths, data fingerprint, log entries)."""

    def _save_checkpoint(self, params, saved, sched, sstate):
        meta = self._meta(sched)
        meta["checkpoint"] = dict(schedule={k: v for k, v in sched.__dict__.items() if k != "history"},
                                  data=self.data_fp, log=self.log_entries)
        arrays = {"saved": saved.flat, **{f"stream_{k}": v for k, v in sstate.items()}, **self.hs_arrays}
        if self.avg is not None:   # --asgd: the running sums of the weights
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
