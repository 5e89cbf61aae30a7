"""Scale benchmark (issue 22 part 4): prepare time and peak memory, training and evaluation speed
on generated Zipf corpora of 10M and 100M tokens.

For each size it generates (or reuses) a Zipf text in --workdir: TRAIN of N tokens over V word
types (every type occurs at least once; about 20 tokens a line) and VALID of N/100 tokens (at most
1M), then measures, each in its own process (peak RSS = that process's ru_maxrss):

* `rnnlm prepare TRAIN VALID` from an empty cache: wall time and peak RSS (the streaming data
  path: the RSS should not grow with N);
* training words/s over the first --train-words words of the cached, memory-mapped TRAIN (one
  chunk is run first to compile and is not timed), for each row of TRAIN_ROWS;
* evaluation words/s over the first --eval-words words of VALID (exact, one stream);
* Ctrl-C latency: a real `rnnlm train` on the prepared corpus, sent SIGINT a few seconds into its
  first epoch, for each softmax (class, hs, full) on 1 and 2 threads: seconds from the signal to
  the process's exit, its checkpoint written (the issue's bound: 2 s), and the checkpoint's size.

The training rows include the per-word schedule on 2 threads and on 1 and 2 Ray workers (a local
Ray, started before the timing; skipped with a note when Ray is not installed): on one 2-core
machine the workers show Ray's overhead against threads, not a cluster's speed.

Prints a table and writes results/bench_scale.json (revision, date, machine, command, numbers).

    python scripts/bench_scale.py                         # 10M/100k and 100M/300k tokens/types
    python scripts/bench_scale.py --sizes 1M:10k,10M:100k --workdir /tmp/bench

The 100M text needs about 1 GB of disk in --workdir and its cache about 0.4 GB more.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Training rows: name -> keyword arguments for ModelConfig ("model") and TrainConfig ("train"; its
# threads default to --threads). A row is measured by `child_train` with these settings.
TRAIN_ROWS = {
    "rnnlm schedule, class softmax": dict(model={}, train=dict(schedule="rnnlm", lr=0.1)),
    "rnnlm schedule, hs": dict(model=dict(softmax="hs", classes=0), train=dict(schedule="rnnlm", lr=0.1)),
    "batch schedule, class softmax": dict(model={}, train=dict(schedule="batch", lr=1.0, batch_size=32)),
    "rnnlm schedule, class, 2 threads": dict(model={}, train=dict(schedule="rnnlm", lr=0.1, threads=2)),
    "rnnlm schedule, class, 1 Ray worker": dict(model={}, train=dict(schedule="rnnlm", lr=0.1, workers=1)),
    "rnnlm schedule, class, 2 Ray workers": dict(model={}, train=dict(schedule="rnnlm", lr=0.1, workers=2)),
}
# Ctrl-C latency rows: name -> rnnlm train options
INTERRUPT_ROWS = {
    "class": ["--softmax", "class"],
    "hs": ["--softmax", "hs"],
    "full": ["--softmax", "full", "--classes", "0"],
}
INTERRUPT_THREADS = (1, 2)


def parse_count(s: str) -> int:
    s = s.strip().lower()
    mult = {"k": 1_000, "m": 1_000_000, "g": 1_000_000_000}.get(s[-1:], 1)
    return int(float(s[:-1] if s[-1:] in "kmg" else s) * mult)


def gen_zipf(path: str, n_tokens: int, n_types: int, seed: int = 0, mean_len: int = 20) -> None:
    """Words w0 .. w{V-1} with probability proportional to 1/rank, about `mean_len` per line."""
    rng = np.random.default_rng(seed)
    cdf = np.cumsum(1.0 / np.arange(1, n_types + 1))
    cdf /= cdf[-1]
    space = np.array([f"w{i} ".encode() for i in range(n_types)], dtype=object)
    eol = np.array([f"w{i}\n".encode() for i in range(n_types)], dtype=object)
    tmp = path + ".tmp"
    done = 0
    with open(tmp, "wb") as fh:
        while done < n_tokens:
            m = min(1 << 20, n_tokens - done)
            ids = np.searchsorted(cdf, rng.random(m))
            if done == 0:
                k = min(n_types, m)
                ids[:k] = rng.permutation(n_types)[:k]   # every type occurs (the first chunk)
            ends = rng.random(m) < 1.0 / mean_len
            ends[-1] = True
            fh.write(b"".join(np.where(ends, eol[ids], space[ids]).tolist()))
            done += m
    os.replace(tmp, path)


def run_json(argv: list, env: dict) -> dict:
    """Run a measuring child process; its last stdout line is JSON."""
    out = subprocess.run(argv, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(f"bench_scale: {' '.join(argv[:4])} ... failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _maxrss_mb() -> float:
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rss_now() -> dict:
    """Resident memory now, split into anonymous (heap: model, buffers) and file-backed (pages of
    the memory-mapped cache and of the libraries; the kernel can drop these) in MB."""
    out = {}
    try:
        with open("/proc/self/status") as fh:
            for ln in fh:
                if ln.startswith(("RssAnon:", "RssFile:")):
                    out[ln.split(":")[0].lower() + "_mb"] = int(ln.split()[1]) / 1024
    except OSError:
        pass
    return out


# ------------------------------------------------------------------ child processes

def child_prepare(a) -> dict:
    from rnnlm.cli.app import main
    t0 = time.perf_counter()
    rc = main(["prepare", a.train, a.valid, "--cache-dir", a.cache, "--classes", str(a.classes)])
    if rc:
        raise SystemExit(rc)
    return dict(seconds=time.perf_counter() - t0, peak_rss_mb=_maxrss_mb())


def _prepared(a):
    from rnnlm.data.corpus import prepare
    return prepare(a.train, a.valid, cache_dir=a.cache, num_classes=a.classes)


def child_train(a) -> dict:
    from rnnlm.runtime import use_threads as _threads
    from rnnlm.model.config import ModelConfig, TrainConfig
    from rnnlm.model.file import Params
    from rnnlm.training.loop import Trainer
    row = TRAIN_ROWS[a.row]
    t0 = time.perf_counter()
    pc = _prepared(a)                      # reuses the cache: cheap key, sampled checksums
    reuse_s = time.perf_counter() - t0
    tok = pc.tokenizer
    mcfg = ModelConfig(**{**dict(vocab_size=len(tok), hidden=a.hidden, classes=tok.num_classes), **row["model"]})
    tcfg = TrainConfig(**{**dict(threads=a.threads, max_epochs=1, checkpoint_words=0), **row["train"]})
    _threads(max(tcfg.threads, tcfg.workers))
    extra = {}
    kw = dict(log=lambda s: None, progress=False, checks=(pc.checks["train"], pc.checks["valid"]))
    model = os.path.join(a.cache, "bench.rnnlm")
    if tcfg.workers:
        try:
            import ray  # noqa: F401
        except ImportError:
            return dict(skipped="Ray is not installed (pip install -e \".[distributed]\")")
        from rnnlm.training.distributed import DistributedTrainer
        t = DistributedTrainer(mcfg, tcfg, tok, pc["train"], pc["valid"], model,
                               ids_path=pc.stats["train"].cache_path or None, **kw)
        s0 = time.perf_counter()
        t._start()                                   # a local Ray and the actors: not timed
        extra["ray_start_seconds"] = time.perf_counter() - s0
    else:
        t = Trainer(mcfg, tcfg, tok, pc["train"], pc["valid"], model, **kw)
    try:
        params = Params.init(mcfg, np.random.default_rng(1))
        sstate, data = t._fresh_stream_state(), t._epoch_data(params)
        per_unit = t.shards if tcfg.schedule == "rnnlm" else tcfg.batch_size * tcfg.bptt
        units = min(t._units(), max(2 * t.chunk, a.train_words // per_unit))
        t._train_chunk(params, sstate, tcfg.lr, 0, t.chunk, data)          # compile, not timed
        t0, words = time.perf_counter(), 0
        for lo in range(t.chunk, units, t.chunk):
            words += t._train_chunk(params, sstate, tcfg.lr, lo, min(units, lo + t.chunk), data)[1]
        sec = time.perf_counter() - t0
    finally:
        if tcfg.workers:
            t._stop()
    return dict(words=words, seconds=sec, words_per_second=words / sec, peak_rss_mb=_maxrss_mb(),
                cache_reuse_seconds=reuse_s, params_mb=params.flat.nbytes / 2**20, **_rss_now(), **extra)


def measure_interrupt(a, train: str, valid: str, cache: str, classes: int, opts: list, threads: int,
                      settle: float = 5.0) -> dict:
    """`rnnlm train` in a child process, sent SIGINT `settle` s after its rollback copy appears
    (training has started: the copy is written just before the first chunk): seconds from the
    signal to the exit, the exit status, where it stopped, the checkpoint's size."""
    import re
    import signal
    model = os.path.join(cache, "interrupt.rnnlm")
    for f in os.listdir(cache):
        if f.startswith("interrupt.rnnlm"):
            os.unlink(os.path.join(cache, f))
    argv = [sys.executable, "-m", "rnnlm", "train", "--train", train, "--valid", valid, "--model", model,
            "--cache-dir", cache, "--hidden", str(a.hidden), "--classes", str(classes), "--threads", str(threads),
            "--max-epochs", "1", *opts]
    env = dict(os.environ)
    env.pop("RNNLM_THREADS", None)
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    started = time.perf_counter()
    rollback = [model + ".ckpt.rollback0", model + ".ckpt.rollback1"]
    while proc.poll() is None and not any(os.path.exists(r) for r in rollback) and time.perf_counter() - started < 600:
        time.sleep(0.05)
    time.sleep(settle)
    if proc.poll() is not None:
        err = proc.communicate()[1]
        if proc.returncode != 0:
            raise SystemExit(f"bench_scale: rnnlm train {' '.join(opts)} failed:\n{err[-2000:]}")
        return dict(skipped="the epoch ended before the signal (a text this small is not what this measures)")
    t0 = time.perf_counter()
    proc.send_signal(signal.SIGINT)
    err = proc.communicate(timeout=600)[1]
    latency = time.perf_counter() - t0
    m = re.search(r"\(epoch 1, ([\d,]+) of ([\d,]+) (words|windows)\)", err)
    ckpt = model + ".ckpt"
    return dict(seconds=latency, returncode=proc.returncode, checkpoint_written="checkpoint" in err and m is not None,
                position=int(m.group(1).replace(",", "")) if m else None,
                checkpoint_mb=os.path.getsize(ckpt) / 1e6 if os.path.exists(ckpt) else None,
                rollback_mb=sum(os.path.getsize(r) for r in rollback if os.path.exists(r)) / 1e6,
                since_start_seconds=t0 - started)


def child_eval(a) -> dict:
    from rnnlm.runtime import use_threads as _threads
    from rnnlm.model.config import ModelConfig
    from rnnlm.use.evaluate import stream_logprobs
    from rnnlm.model.file import Params
    from rnnlm.model.layout import ClassInfo
    pc = _prepared(a)
    tok = pc.tokenizer
    _threads(a.threads)
    mcfg = ModelConfig(vocab_size=len(tok), hidden=a.hidden, classes=tok.num_classes)
    params = Params.init(mcfg, np.random.default_rng(1))
    ci = ClassInfo.from_tokenizer(tok, True)
    ids = pc["valid"][:a.eval_words]
    stream_logprobs(mcfg, params, ci, ids[:4096], tok.eos_id)                 # compile, not timed
    t0 = time.perf_counter()
    lp = stream_logprobs(mcfg, params, ci, ids, tok.eos_id)
    sec = time.perf_counter() - t0
    return dict(words=len(lp), seconds=sec, words_per_second=len(lp) / sec, peak_rss_mb=_maxrss_mb())


# ------------------------------------------------------------------ tables

def _count(n: int) -> str:
    return f"{n / 1e6:g}M" if n >= 1_000_000 else f"{n / 1e3:g}k"


def _size(r) -> str:
    return f"{_count(r['tokens'])} / {_count(r['types'])}"


def make_tables(results: list) -> dict:
    """The printed tables as {name: {columns, rows}} (results.write's layout): the data path per
    size; training words/s per row and size; Ctrl-C latency per softmax and threads and size."""
    scale = dict(columns=["tokens", "types", "classes", "prepare s", "prepare peak RSS MB", "eval words/s",
                          "cache reuse s", "train peak RSS MB"], rows=[])
    for r in results:
        ok = [v for v in r["train"].values() if "skipped" not in v]
        scale["rows"].append([r["tokens"], r["types"], r["classes"], round(r["prepare"]["seconds"], 1),
                              round(r["prepare"]["peak_rss_mb"]), round(r["eval"]["words_per_second"]),
                              round(max(v["cache_reuse_seconds"] for v in ok), 2),
                              round(max(v["peak_rss_mb"] for v in ok))])
    train = dict(columns=["training (hidden 100, words/s)"] + [_size(r) for r in results], rows=[])
    for name in TRAIN_ROWS:
        cells = [name]
        for r in results:
            v = r["train"].get(name, {})
            cells.append("skipped" if "skipped" in v or not v else round(v["words_per_second"]))
        train["rows"].append(cells)
    inter = dict(columns=["Ctrl-C: softmax, threads"] + [f"{_size(r)}: s to exit" for r in results]
                 + [f"{_size(r)}: checkpoint MB" for r in results], rows=[])
    names = list(dict.fromkeys(k for r in results for k in r.get("interrupt", {})))
    for name in names:
        vals = [r.get("interrupt", {}).get(name) for r in results]
        vals = [v if v and "skipped" not in v else None for v in vals]
        inter["rows"].append([name] + [round(v["seconds"], 2) if v else "n/a" for v in vals]
                             + [round(v["checkpoint_mb"]) if v and v["checkpoint_mb"] else "n/a" for v in vals])
    out = {"scale": scale, "train": train}
    if names:
        out["interrupt"] = inter
    return out


def render(t: dict) -> str:
    def cell(v):
        return f"{v:,}" if isinstance(v, int) else (f"{v:,.2f}" if isinstance(v, float) else str(v))
    lines = ["| " + " | ".join(t["columns"]) + " |", "|" + "---:|" * len(t["columns"])]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in t["rows"]]
    return "\n".join(lines)


# ------------------------------------------------------------------ driver

def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="10M:100k,100M:300k",
                   help="comma-separated TOKENS:TYPES (default: 10M:100k,100M:300k)")
    p.add_argument("--workdir", default="/tmp/rnnlm-bench-scale", help="texts and caches (default: %(default)s)")
    p.add_argument("--keep", action="store_true", help="keep the generated texts and caches")
    p.add_argument("--hidden", type=int, default=100)
    p.add_argument("--classes", type=int, default=0, help="classes (default: sqrt of the types)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--train-words", type=int, default=200_000, help="words timed per training row")
    p.add_argument("--eval-words", type=int, default=200_000, help="words timed for evaluation")
    p.add_argument("--no-interrupt", action="store_true", help="skip the Ctrl-C latency measurements")
    p.add_argument("--out", default=os.path.join(ROOT, "results", "bench_scale.json"))
    p.add_argument("--child", choices=("prepare", "train", "eval"), help=argparse.SUPPRESS)
    for name in ("train", "valid", "cache", "row"):
        p.add_argument(f"--{name}", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        res = {"prepare": child_prepare, "train": child_train, "eval": child_eval}[a.child](a)
        print(json.dumps(res))
        return 0

    os.makedirs(a.workdir, exist_ok=True)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import results as results_json
    started = results_json.start()
    env = dict(os.environ, RNNLM_THREADS=str(a.threads))
    results = []
    for spec in a.sizes.split(","):
        tokens, types = (parse_count(x) for x in spec.split(":"))
        tag = f"zipf-{tokens}-{types}"
        train, valid = (os.path.join(a.workdir, f"{tag}-{s}.txt") for s in ("train", "valid"))
        t0 = time.perf_counter()
        if not os.path.exists(train):
            gen_zipf(train, tokens, types, seed=0)
        if not os.path.exists(valid):
            gen_zipf(valid, min(1_000_000, max(10_000, tokens // 100)), types, seed=1)
        gen_s = time.perf_counter() - t0
        classes = a.classes or int(round(types ** 0.5))
        cache = os.path.join(a.workdir, f"{tag}-cache")
        shutil.rmtree(cache, ignore_errors=True)
        base = [sys.executable, os.path.abspath(__file__), "--train", train, "--valid", valid, "--cache", cache,
                "--classes", str(classes), "--hidden", str(a.hidden), "--threads", str(a.threads),
                "--train-words", str(a.train_words), "--eval-words", str(a.eval_words)]
        row = dict(tokens=tokens, types=types, classes=classes, text_bytes=os.path.getsize(train),
                   generate_seconds=gen_s)
        print(f"[{tag}] text {row['text_bytes'] / 1e6:,.0f} MB; prepare ...", file=sys.stderr, flush=True)
        row["prepare"] = run_json(base + ["--child", "prepare"], env)
        row["train"] = {}
        for name in TRAIN_ROWS:
            print(f"[{tag}] train: {name} ...", file=sys.stderr, flush=True)
            row["train"][name] = run_json(base + ["--child", "train", "--row", name], env)
        print(f"[{tag}] eval ...", file=sys.stderr, flush=True)
        row["eval"] = run_json(base + ["--child", "eval"], env)
        row["interrupt"] = {}
        if not a.no_interrupt:
            for name, opts in INTERRUPT_ROWS.items():
                for th in INTERRUPT_THREADS:
                    print(f"[{tag}] Ctrl-C: {name} softmax, {th} thread(s) ...", file=sys.stderr, flush=True)
                    row["interrupt"][f"{name}, {th} thread{'s' if th > 1 else ''}"] = measure_interrupt(
                        a, train, valid, cache, classes, opts, th)
        results.append(row)
        if not a.keep:
            shutil.rmtree(cache, ignore_errors=True)
            for f in (train, valid):
                os.unlink(f)

    tables = make_tables(results)
    for t in tables.values():
        print(render(t))
    name = os.path.splitext(os.path.basename(a.out))[0]
    results_json.write(name, results, started, dict(settings=dict(hidden=a.hidden, threads=a.threads,
                                                                   train_words=a.train_words, eval_words=a.eval_words,
                                                                   rows=list(TRAIN_ROWS),
                                                                   interrupt_rows=INTERRUPT_ROWS)),
                       out_dir=os.path.dirname(os.path.abspath(a.out)),
                       tables=tables)
    print(f"wrote {a.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
