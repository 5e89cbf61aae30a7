"""Scale benchmark (issue 22 part 4): prepare time and peak memory, training and evaluation speed
on generated Zipf corpora of 10M and 100M tokens.

For each size it generates (or reuses) a Zipf text in --workdir: TRAIN of N tokens over V word
types (every type occurs at least once; about 20 tokens a line) and VALID of N/100 tokens (at most
1M), then measures, each in its own process (peak RSS = that process's ru_maxrss):

* `rnnlm prepare TRAIN VALID` from an empty cache: wall time and peak RSS (the streaming data
  path: the RSS should not grow with N);
* training words/s over the first --train-words words of the cached, memory-mapped TRAIN (one
  chunk is run first to compile and is not timed), for each row of TRAIN_ROWS;
* evaluation words/s over the first --eval-words words of VALID (exact, one stream).

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

# Training rows: name -> keyword arguments for ModelConfig ("model") and TrainConfig ("train").
# EXTENSION POINT (issue 22 parts 2 and 3, built on other branches): when `--softmax hs` and
# `--workers N` exist, add rows here, e.g.
#   "rnnlm, hs softmax":      dict(model=dict(softmax="hs"), train=dict(schedule="rnnlm")),
#   "rnnlm, class, 2 workers": dict(model={}, train=dict(schedule="rnnlm", workers=2)),
# (and nothing else: a row is measured by `measure_train` with these settings).
TRAIN_ROWS = {
    "rnnlm schedule, class softmax": dict(model={}, train=dict(schedule="rnnlm", lr=0.1)),
    "rnnlm schedule, hs": dict(model=dict(softmax="hs", classes=0), train=dict(schedule="rnnlm", lr=0.1)),
    "batch schedule, class softmax": dict(model={}, train=dict(schedule="batch", lr=1.0, batch_size=32)),
}


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
    tcfg = TrainConfig(threads=a.threads, max_epochs=1, checkpoint_words=0, **row["train"])
    _threads(a.threads)
    t = Trainer(mcfg, tcfg, tok, pc["train"], pc["valid"], os.path.join(a.cache, "bench.rnnlm"),
                log=lambda s: None, progress=False, checks=(pc.checks["train"], pc.checks["valid"]))
    params = Params.init(mcfg, np.random.default_rng(1))
    sstate, data = t._fresh_stream_state(), t._epoch_data(params)
    per_unit = 1 if tcfg.schedule == "rnnlm" else tcfg.batch_size * tcfg.bptt
    units = min(t._units(), max(2 * t.chunk, a.train_words // per_unit))
    t._train_chunk(params, sstate, tcfg.lr, 0, t.chunk, data)          # compile, not timed
    t0, words = time.perf_counter(), 0
    for lo in range(t.chunk, units, t.chunk):
        words += t._train_chunk(params, sstate, tcfg.lr, lo, min(units, lo + t.chunk), data)[1]
    sec = time.perf_counter() - t0
    return dict(words=words, seconds=sec, words_per_second=words / sec, peak_rss_mb=_maxrss_mb(),
                cache_reuse_seconds=reuse_s, params_mb=params.flat.nbytes / 2**20, **_rss_now())


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
    started = time.time()
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
        results.append(row)
        if not a.keep:
            shutil.rmtree(cache, ignore_errors=True)
            for f in (train, valid):
                os.unlink(f)

    lines = [f"| tokens | types | classes | prepare s | prepare peak RSS MB | "
             + " | ".join(f"train words/s: {n}" for n in TRAIN_ROWS) + " | eval words/s | "
             "cache reuse s | train peak RSS MB |",
             "|" + "---:|" * (8 + len(TRAIN_ROWS))]
    for r in results:
        lines.append(f"| {r['tokens']:,} | {r['types']:,} | {r['classes']} | {r['prepare']['seconds']:.1f} | "
                     f"{r['prepare']['peak_rss_mb']:.0f} | "
                     + " | ".join(f"{r['train'][n]['words_per_second']:,.0f}" for n in TRAIN_ROWS)
                     + f" | {r['eval']['words_per_second']:,.0f} | "
                     + f"{max(v['cache_reuse_seconds'] for v in r['train'].values()):.2f} | "
                     + f"{max(v['peak_rss_mb'] for v in r['train'].values()):.0f} |")
    table = "\n".join(lines)
    print(table)
    cols = ["tokens", "types", "classes", "prepare s", "prepare peak RSS MB", *(f"train words/s: {n}" for n in TRAIN_ROWS),
            "eval words/s", "cache reuse s", "train peak RSS MB"]
    printed = [[r["tokens"], r["types"], r["classes"], round(r["prepare"]["seconds"], 1),
                round(r["prepare"]["peak_rss_mb"]), *(round(r["train"][n]["words_per_second"]) for n in TRAIN_ROWS),
                round(r["eval"]["words_per_second"]), round(max(v["cache_reuse_seconds"] for v in r["train"].values()), 2),
                round(max(v["peak_rss_mb"] for v in r["train"].values()))] for r in results]
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import results as results_json
    name = os.path.splitext(os.path.basename(a.out))[0]
    results_json.write(name, results, started, dict(settings=dict(hidden=a.hidden, threads=a.threads,
                                                                   train_words=a.train_words, eval_words=a.eval_words,
                                                                   rows=list(TRAIN_ROWS))),
                       out_dir=os.path.dirname(os.path.abspath(a.out)),
                       tables={"scale": dict(columns=cols, rows=printed)})
    print(f"wrote {a.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
