#!/usr/bin/env python
"""Speed of training and evaluation, next to PyTorch and the machine's own GEMM peak, in one run.

    python scripts/bench.py [--data DIR] [--runs 3] [--train-words 100000] [--full-words 11200]
                            [--threads 1 2] [--only a,b,c] [--no-cold] [--no-torch]
                            [--rnnlm04b PATH [--rnnlm04b-epochs 3]] [--taskset CPU]

Prints one markdown table. Configurations (PTB from ../shared/corpora/ptb or --data DIR; without it
the bundled corpora/synthetic, with a warning):
  (a) hidden 100, 100 classes, bptt 4: rnnlm-0.4b's per-word schedule (--bptt-block 10) and the batch
      schedule (32 streams x 4 steps);
  (b) hidden 200, 100 classes, the same two schedules;
  (c) hidden 200, full softmax, batch schedule with 32 streams x 35 steps, and PyTorch's
      nn.RNN(nonlinearity='tanh') + nn.Linear + cross-entropy + SGD step of the same sizes (when
      torch is importable: pip install -e ".[bench]").
With --rnnlm04b PATH (or $RNNLM04B), Mikolov's rnnlm-0.4b binary (built outside this repository) is
measured in the same run for (a) and (b), right after our rows of that configuration, and each of our
rows shows its speed divided by rnnlm-0.4b's (train, eval).
The batch schedule and PyTorch run with each --threads count, the per-word schedule too when this
version trains it on threads (text shards); evaluation is single-threaded.

How each figure is taken:
  train words/s  through the library, not the command line: Trainer's chunk function on the training
                 text (the per-word kernel, or BatchStepper gradient + update per window); the first
                 (compiling) call and one warm-up run are discarded, then the median of --runs runs of
                 --train-words words each (--full-words for (c) and PyTorch).
  eval words/s   evaluate.stream_logprobs over the test text (what `rnnlm eval` runs), median of --runs
                 after a warm-up; one thread.
  peak RSS       of the worker process that measured the row (data, model, training and evaluation;
                 in the multi-thread rows also the sync probe's compilation).
  cold start     `rnnlm train` of one epoch on a tiny file with an empty NUMBA_CACHE_DIR (everything
                 that run needs compiled from scratch), wall time.
  warm start     `rnnlm eval MODEL tiny-file` until its first line of output, the second of two runs.
  sgemm          NumPy float32 2048 x 2048 matrix product, GFLOP/s (median of 5) on 1 and 2 threads;
                 the roofline of (c) is sgemm / (6 * H * V) tokens/s (forward, output gradient and
                 hidden error: three products of H x V per token).
  rnnlm-0.4b     train words/s: the Words/sec it prints after each epoch (words over the CPU time of
                 the training pass), median over --rnnlm04b-epochs epochs of the full training text
                 (-max-iter), -hidden H -class 100 -bptt 4 -bptt-block 10 -rand-seed 1; the wall-clock
                 speed of the same passes is printed under the table (they differ when the machine is
                 busy). eval words/s: `rnnlm -rnnlm M -test test.txt`, tokens over (wall time minus the
                 same run on a one-line file), median of --runs; warm start: that one-line run.
  sync probe     microseconds per round of the most threads of rnnlm's pool meeting at a barrier
                 with nothing between (launch_probe), at the start and at the end, and in the
                 multi-thread rows' own processes just before and after each timed run (printed under
                 the table with each run's words/s): what each phase of the threaded kernels pays to
                 hand over work, which shows when a core is slow to answer (a busy VM neighbour).
--taskset CPU pins rnnlm-0.4b and our one-thread rows to that core (the multi-thread rows are not
pinned). The figures also go to results/bench.json (revision, machine, command line, every row).
Each row runs in its own process (`--worker`). The rows that differ only in their thread count are
measured together: their processes are set up one after the other, then take their timed runs in
turn (run 1 of each, then run 2, ...), so that the two medians behind the 2-thread speed-up printed
beside a row come from the same minutes. A slow spell of the VM still slows the 2-thread runs far more
than the 1-thread ones; the probes printed under the table show which runs it met. Timings on a
loaded machine are noisy, so the load average is printed with the table.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from baselines import launch_probe, sgemm_gflops, torch_run  # noqa: E402 (scripts/ is not a package)
import rnnlm04b  # noqa: E402
import results as results_json  # noqa: E402
from startup import cold_start, tiny_file, warm_start  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PTB = os.path.join(ROOT, "..", "shared", "corpora", "ptb")
SYNTHETIC = os.path.join(ROOT, "corpora", "synthetic")

MODELS = {   # name -> hidden, classes
    "a": (100, 100),
    "b": (200, 100),
    "c": (200, 0),
}
LABEL = {"a": "(a) hidden 100, 100 classes", "b": "(b) hidden 200, 100 classes",
         "c": "(c) hidden 200, full softmax"}


def _rnnlm_threads() -> bool:
    """Whether this version trains the per-word schedule on several threads (text shards)."""
    from rnnlm.training.loop import Trainer
    return hasattr(Trainer, "_train_shards")


def rows(models, threads, torch_ok):
    out = []
    for m in models:
        if m in ("a", "b"):
            for n in (threads if _rnnlm_threads() else [1]):
                out.append(dict(model=m, kind="rnnlm", threads=n, B=1, T=4))
        for n in threads:
            out.append(dict(model=m, kind="batch", threads=n, B=32, T=35 if m == "c" else 4))
        if m == "c" and torch_ok:
            for n in threads:
                out.append(dict(model=m, kind="torch", threads=n, B=32, T=35))
    return out


# ----------------------------------------------------------------------------- worker (one row)

def _rate(fn) -> float:
    t0 = time.perf_counter()
    n = fn()
    return n / (time.perf_counter() - t0)


def _median_rate(fn, runs: int) -> float:
    fn()                        # warm-up (the compiling call came before)
    return statistics.median(_rate(fn) for _ in range(runs))


def _peak_rss_mb() -> float:
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def setup(spec: dict):
    """The row's training run, ready to time: (res, run) with run() -> words trained; the compiling
    call and one warm-up run done."""
    import numpy as np
    H, C = MODELS[spec["model"]]
    words = spec["full_words"] if spec["model"] == "c" else spec["train_words"]
    from rnnlm.data.corpus import prepare
    pc = prepare(*(os.path.join(spec["data"], f"{s}.txt") for s in ("train", "valid", "test")),
                 num_classes=max(C, 1), cache_dir=spec["cache_dir"])
    tok = pc.tokenizer
    train_ids = np.ascontiguousarray(pc["train"], dtype=np.int32)
    res = dict(vocab=len(tok), train_tokens=len(train_ids))
    if spec["kind"] == "torch":
        run = torch_run(len(tok), H, spec["B"], spec["T"], spec["threads"], train_ids, words)
        run()
        return res, run
    import numba
    numba.set_num_threads(spec["threads"])
    from rnnlm.model.config import ModelConfig, TrainConfig
    from rnnlm.model.file import Params
    from rnnlm.training.loop import Trainer
    mcfg = ModelConfig(vocab_size=len(tok), hidden=H, classes=C)
    schedule = "rnnlm" if spec["kind"] == "rnnlm" else "batch"
    tcfg = TrainConfig(schedule=schedule, bptt=spec["T"], bptt_block=10, batch_size=spec["B"],
                       lr=0.1 if schedule == "rnnlm" else 1.0, threads=spec["threads"])
    tmp = tempfile.mkdtemp(dir=spec["tmp"])
    tr = Trainer(mcfg, tcfg, tok, train_ids, pc["valid"], os.path.join(tmp, "m.rnnlm"), log=lambda s: None,
                 progress=False)
    params = Params.init(mcfg, np.random.default_rng(1))
    sstate = tr._fresh_stream_state()
    chunk_data = tr._epoch_data(params)
    units_total = tr._units()
    per_unit = 1 if schedule == "rnnlm" else spec["B"] * spec["T"]
    units = max(1, -(-words // per_unit))
    pos = [0]

    def run():
        done = words_done = 0
        while done < units:
            a = pos[0] % units_total
            b = min(units_total, a + min(units - done, tr.chunk))
            words_done += tr._train_chunk(params, sstate, tcfg.lr, a, b, chunk_data)[1]
            done += b - a
            pos[0] = b
        return words_done

    tr._train_chunk(params, sstate, tcfg.lr, 0, 1, chunk_data)     # compiles (discarded)
    pos[0] = 1
    run()                                                           # warm-up (discarded)
    res.update(mcfg=mcfg, params=params, tok=tok, test_ids=np.ascontiguousarray(pc["test"], dtype=np.int32))
    return res, run


def finish(spec: dict, res: dict) -> dict:
    """The row's evaluation speed (when asked) and peak RSS, as JSON-ready figures."""
    if spec.get("eval"):
        from rnnlm.use.evaluate import stream_logprobs
        from rnnlm.model.layout import ClassInfo
        mcfg, params, tok, test_ids = res["mcfg"], res["params"], res["tok"], res["test_ids"]
        ci = ClassInfo.from_tokenizer(tok, mcfg.classes > 0)
        ev = lambda: len(stream_logprobs(mcfg, params, ci, test_ids, tok.eos_id))
        ev()                                                            # compiles (discarded)
        res["eval_wps"] = _median_rate(ev, spec["runs"])
        if spec.get("save_model"):
            from rnnlm.model.file import ModelFile, save_model
            save_model(spec["save_model"], ModelFile(mcfg, params, tok.to_bytes(), {}))
    res["rss_mb"] = _peak_rss_mb()
    return {k: v for k, v in res.items() if k not in ("mcfg", "params", "tok", "test_ids")}


# seconds between the probe and the timed run (the OpenMP probe of earlier versions left threads
# spinning that took a core from the timed run: 4% slower right after it, 1% after 50 ms, not at all
# after 300 ms; the pool's threads spin about a millisecond)
PROBE_SETTLE = 0.3


def worker_loop(spec: dict) -> None:
    """A row's process: sets up, prints {"ready": ...}, then one timed run per "run" line on stdin
    ({"rate": words/s}), and on "finish" the row's other figures; so that the orchestrator can
    interleave the timed runs of several rows. Rows on several threads also report the sync probe
    (launch_probe) just before and after each run, the larger of the two."""
    if spec.get("cpu") is not None and spec["threads"] == 1:
        os.sched_setaffinity(0, {spec["cpu"]})
    res, run = setup(spec)
    probe = launch_probe(spec["threads"]) if spec["threads"] > 1 and spec["kind"] != "torch" else None
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        if line.strip() != "run":
            break
        before = probe() if probe else None
        if probe:
            time.sleep(PROBE_SETTLE)
        rate = _rate(run)
        after = probe() if probe else None
        print(json.dumps({"rate": rate, "probe": max(before, after) if probe else None}), flush=True)
    print(json.dumps(finish(spec, res)), flush=True)


def _groups(all_rows):
    """Rows that differ only in thread count, together (their timed runs are interleaved)."""
    out = {}
    for row in all_rows:
        out.setdefault((row["model"], row["kind"]), []).append(row)
    return list(out.values())


def _ask(proc, err, line: str) -> dict:
    """Send `line` (if any) to a worker, return its next JSON line; its stderr (err) on failure."""
    if line:
        proc.stdin.write(line + "\n")
        proc.stdin.flush()
    out = proc.stdout.readline()
    if not out:
        proc.wait()
        err.seek(0)
        raise RuntimeError(f"bench worker failed (exit {proc.returncode}):\n{err.read()[-3000:]}")
    return json.loads(out)


def interleaved(specs, runs: int):
    """The figures of the rows `specs`, each measured by its own worker process (set up one after the
    other, each then idle), their timed runs taken in turn: run 1 of every row, then run 2, ... so
    that the rows are measured over the same minutes, not one after the other."""
    procs, errs = [], []
    try:
        for spec in specs:
            errs.append(tempfile.TemporaryFile(mode="w+"))
            procs.append(subprocess.Popen([sys.executable, os.path.abspath(__file__), "--worker", json.dumps(spec)],
                                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errs[-1], text=True))
            _ask(procs[-1], errs[-1], "")        # {"ready": true}: compiled and warmed up
        rates = [[] for _ in procs]
        probes = [[] for _ in procs]
        for _ in range(runs):
            for p, e, r, pr in zip(procs, errs, rates, probes):
                time.sleep(0.05)                 # the other rows' threads are asleep by now
                got = _ask(p, e, "run")
                r.append(got["rate"])
                pr.append(got["probe"])
        out = []
        for p, e, r, pr in zip(procs, errs, rates, probes):
            res = _ask(p, e, "finish")
            res["train_wps"] = statistics.median(r)
            res["runs_wps"] = r
            res["probes"] = pr
            p.stdin.close()
            p.wait()
            out.append(res)
        return out
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        for e in errs:
            e.close()


# ----------------------------------------------------------------------------- start-up timings

def sync_probe_us(threads: int) -> float:
    """launch_probe's reading (median of 5), in a process of its own."""
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--probe", str(threads)], check=True,
                         capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- main

def _fmt(v, spec="{:,.0f}", none="—"):
    return none if v is None else spec.format(v)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", help="directory with train.txt, valid.txt, test.txt (default: PTB)")
    ap.add_argument("--runs", type=int, default=3, help="timed runs per figure, median reported (>= 3)")
    ap.add_argument("--train-words", type=int, default=100_000, help="words per timed training run, (a) (b)")
    ap.add_argument("--full-words", type=int, default=11_200, help="words per timed run, (c) and PyTorch")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--only", default="a,b,c", help="configurations, e.g. a,c")
    ap.add_argument("--no-cold", action="store_true", help="skip the cold-start measurements (slow)")
    ap.add_argument("--no-torch", action="store_true", help="skip PyTorch even when it is installed")
    rnnlm04b.add_argument(ap)
    ap.add_argument("--rnnlm04b-epochs", type=int, default=3, metavar="N",
                    help="rnnlm-0.4b training epochs (-max-iter) whose Words/sec are medianed (default 3)")
    ap.add_argument("--taskset", type=int, metavar="CPU",
                    help="pin rnnlm-0.4b and our one-thread rows to this core")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--probe", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.probe:
        probe = launch_probe(args.probe)
        print(statistics.median(probe(20000) for _ in range(5)))
        return 0
    if args.worker:
        worker_loop(json.loads(args.worker))
        return 0
    binary = rnnlm04b.find_binary(args.rnnlm04b, required=False)
    data = args.data or PTB
    if not all(os.path.isfile(os.path.join(data, f"{s}.txt")) for s in ("train", "valid", "test")):
        if args.data:
            print(f"bench.py: {data}: needs train.txt, valid.txt and test.txt", file=sys.stderr)
            return 1
        print(f"bench.py: warning: PTB not found at {os.path.abspath(PTB)}; using the bundled corpus "
              f"{SYNTHETIC} (figures not comparable with PTB ones)", file=sys.stderr)
        data = SYNTHETIC
    data = os.path.abspath(data)
    runs = max(3, args.runs)
    models = [m for m in args.only.split(",") if m in MODELS]
    torch_ok = False
    torch_version = ""
    if not args.no_torch:
        try:
            import torch
            torch_ok, torch_version = True, torch.__version__
        except ImportError:
            print("bench.py: torch not installed (pip install -e '.[bench]'): no PyTorch rows", file=sys.stderr)
    load0 = os.getloadavg()
    t_start = results_json.start()
    gemm = {n: sgemm_gflops(n) for n in args.threads}
    par = max(args.threads)
    probe0 = sync_probe_us(par) if par > 1 else None
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        tiny = os.path.join(tmp, "tiny.txt")
        tiny_file(data, tiny)
        token_cache = os.path.join(tmp, "tokens")
        eval_done = set()
        warm = {}
        cold = {}
        all_rows = rows(models, args.threads, torch_ok)
        for m in models:
            for group in _groups([r for r in all_rows if r["model"] == m]):
                specs = []
                for row in group:
                    spec = dict(row, data=data, runs=runs, train_words=args.train_words, full_words=args.full_words,
                                cache_dir=token_cache, tmp=tmp, cpu=args.taskset)
                    if row["kind"] != "torch" and row["threads"] == 1 and row["model"] not in eval_done:
                        spec["eval"] = True
                        spec["save_model"] = os.path.join(tmp, f"{row['model']}.rnnlm")
                        eval_done.add(row["model"])
                    specs.append(spec)
                print(f"bench.py: {LABEL[m]}, {group[0]['kind']}, "
                      f"{' and '.join(str(r['threads']) for r in group)} thread(s) ...", file=sys.stderr, flush=True)
                for row, spec, res in zip(group, specs, interleaved(specs, runs)):
                    if spec.get("save_model"):
                        warm[row["model"]] = warm_start(spec["save_model"], tiny)
                    key = (row["kind"], row["threads"])
                    if row["kind"] != "torch" and not args.no_cold and key not in cold:
                        cold[key] = cold_start(row, MODELS[m][1], tiny, tmp)   # compilation depends on schedule and threads only
                    results.append((row, res))
            if binary and m in ("a", "b"):
                print(f"bench.py: {LABEL[m]}, rnnlm-0.4b, {args.rnnlm04b_epochs} epoch(s) ...", file=sys.stderr,
                      flush=True)
                results.append((dict(model=m, kind="rnnlm04b", threads=1, B=1, T=4),
                                rnnlm04b_row(binary, m, data, tmp, args.rnnlm04b_epochs, runs, args.taskset)))
    load1 = os.getloadavg()
    probe1 = sync_probe_us(par) if par > 1 else None
    import platform
    import numba
    import numpy
    ours = next(res for row, res in results if row["kind"] != "rnnlm04b")
    rev = results_json.revision()
    print(f"rnnlm bench, {time.strftime('%Y-%m-%d %H:%M')}, {results_json.cpu_model()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, NumPy {numpy.__version__}, Numba {numba.__version__}"
          + (f", PyTorch {torch_version}" if torch_ok else "") + f"; revision {(rev['commit'] or '?')[:12]}"
          f"{' (dirty)' if rev['dirty'] else ''}; data {data} ({ours['train_tokens']:,} training tokens, "
          f"vocabulary {ours['vocab']:,}); medians of {runs} runs; {time.time() - t_start:.0f} s in all")
    print(f"load average {load0[0]:.2f} at the start, {load1[0]:.2f} at the end "
          f"(above 0 means other jobs shared the cores)")
    print("sgemm (NumPy float32 2048^3): " + ", ".join(f"{gemm[n]:.0f} GFLOP/s on {n} thread{'s' * (n > 1)}"
                                                       for n in args.threads))
    if par > 1:
        print(f"{par}-thread sync probe (threads meeting at a barrier): {probe0:.2f} µs per round at the "
              f"start, {probe1:.2f} at the end (about 0.05 on a quiet 2-core VM here; more means the threads "
              f"waited for a busy core, and every {par}-thread figure suffers)")
    table = table_rows(results, gemm, cold, warm)
    print()
    cols = ["configuration", "training", "threads", "train words/s", "eval words/s", "peak RSS", "cold start",
            "warm start"] + (["÷ rnnlm-0.4b (train / eval)"] if binary else [])
    print("| " + " | ".join(cols) + " |")
    print("|---|---|" + "---:|" * (len(cols) - 2))
    printed = []
    for t in table:
        cells = [t["configuration"], t["training"], str(t["threads"]), t["train_cell"], _fmt(t["eval_wps"]),
                 f"{t['peak_rss_mb']:,.0f} MB", _fmt(t["cold_start_s"], "{:.1f} s"), _fmt(t["warm_start_s"], "{:.2f} s")]
        if binary:
            cells.append("—" if t["kind"] == "rnnlm04b" else
                         f"{_fmt(t.get('vs_rnnlm04b_train'), '{:.2f}×')} / {_fmt(t.get('vs_rnnlm04b_eval'), '{:.2f}×')}")
        print("| " + " | ".join(cells) + " |")
        printed.append(cells)
    note = ("eval: evaluate.stream_logprobs over the test text (one thread); warm start: `rnnlm eval` of "
            "that row's model on a 300-line file; cold start: first `rnnlm train` with an empty Numba cache "
            "(same schedule and thread count, tiny model)")
    print()
    print(note)
    for t in table:
        if t["kind"] == "rnnlm04b":
            r = t["rnnlm04b"]
            busy = r["train"]["median_wall_wps"] and abs(r["train"]["median_wall_wps"] / t["train_wps"] - 1) > 0.05
            print(f"rnnlm-0.4b {t['configuration']}: Words/sec it printed per epoch "
                  f"{', '.join(f'{e:,.0f}' for e in r['words_per_sec'])} (median {t['train_wps']:,.0f}); wall clock "
                  f"{_fmt(r['train']['median_wall_wps'])}" + (" (differs: the core was shared, compare with care)"
                                                               if busy else "") +
                  f"; -test {r['test']['tokens']:,} tokens in {r['test']['wall_seconds']:.2f} s with loading "
                  f"({r['test']['wps']:,.0f} words/s), loading alone {_fmt(r['test']['load_seconds'], '{:.2f} s')}, "
                  f"on CPU time without loading {_fmt(r['test']['wps_no_load_cpu'])} words/s; "
                  f"test PPL after {len(r['words_per_sec'])} epoch(s) {r['test']['ppl']:.2f}")
    multi = [(row, res) for row, res in results if any(p is not None for p in res.get("probes", []))]
    if multi:
        print()
        print("sync probe around each timed run of the multi-thread rows (µs, the larger of just before and "
              "just after), with that run's train words/s, in run order:")
        for row, res in multi:
            cells = ", ".join(f"{p:.2f} ({w:,.0f})" for p, w in zip(res["probes"], res["runs_wps"]))
            print(f"- {LABEL[row['model']]}, {row['kind']}, {row['threads']} threads: {cells}")
    path = results_json.write("bench", table, t_start, dict(
        data=data, train_tokens=ours["train_tokens"], vocab=ours["vocab"], runs=runs, train_words=args.train_words,
        full_words=args.full_words, loadavg_start=list(load0), loadavg_end=list(load1), torch=torch_version or None,
        sgemm_gflops={str(n): g for n, g in gemm.items()}, sync_probe_us=dict(start=probe0, end=probe1),
        taskset=args.taskset, rnnlm04b=rnnlm04b.describe(binary) if binary else None),
        tables={"speed": dict(columns=cols, rows=printed, note=note)})
    print(f"\nbench.py: figures written to {os.path.relpath(path)}", file=sys.stderr)
    return 0


def rnnlm04b_row(binary: str, m: str, data: str, tmp: str, epochs: int, runs: int, cpu) -> dict:
    """rnnlm-0.4b on configuration m: trained `epochs` epochs on the full training text, then -test."""
    H, C = MODELS[m]
    f = lambda s: os.path.join(data, f"{s}.txt")
    model = os.path.join(tmp, f"rnnlm04b-{m}.model")
    tr = rnnlm04b.train(binary, f("train"), f("valid"), model, hidden=H, classes=C, bptt=4, bptt_block=10,
                        seed=1, max_iter=epochs, cpu=cpu)
    te = rnnlm04b.test(binary, model, f("test"), cpu=cpu, runs=runs)
    return dict(train_wps=tr.median_wps, eval_wps=te.wps_no_load, rss_mb=tr.peak_rss_mb, warm=te.load_seconds,
                words_per_sec=[e.words_per_sec for e in tr.epochs], train=tr.to_dict(), test=te.to_dict())


def table_rows(results, gemm, cold, warm) -> list[dict]:
    """The printed table as rows with named fields (also what results/bench.json holds)."""
    kinds = {"rnnlm": "per-word (rnnlm-0.4b), bptt 4, block 10", "batch": "batch", "torch": "PyTorch nn.RNN",
             "rnnlm04b": "rnnlm-0.4b binary, bptt 4, block 10 (its Words/sec)"}
    theirs = {row["model"]: res for row, res in results if row["kind"] == "rnnlm04b"}
    out = []
    for row, res in results:
        H, C = MODELS[row["model"]]
        kind = kinds[row["kind"]] + (f", {row['B']} x {row['T']}" if row["kind"] in ("batch", "torch") else "")
        t = dict(configuration=LABEL[row["model"]], model=row["model"], hidden=H, classes=C, kind=row["kind"],
                 training=kind, threads=row["threads"], batch=row["B"], bptt=row["T"], train_wps=res["train_wps"],
                 eval_wps=res.get("eval_wps"), peak_rss_mb=res["rss_mb"])
        roof = ""
        if row["model"] == "c" and row["threads"] in gemm:
            r = gemm[row["threads"]] * 1e9 / (6 * H * res["vocab"])
            t.update(roofline_wps=r, roofline_pct=100 * res["train_wps"] / r)
            roof = f" ({100 * res['train_wps'] / r:.0f}% of roofline {r:,.0f})"
        one = next((r2 for w, r2 in results if w["model"] == row["model"] and w["kind"] == row["kind"]
                    and w["threads"] == 1), None)
        if one is not None and row["threads"] > 1:
            t["speedup_vs_1_thread"] = res["train_wps"] / one["train_wps"]
            roof = f" ({t['speedup_vs_1_thread']:.2f}×" + (f"; {roof[2:]}" if roof else ")")
        t["train_cell"] = _fmt(res["train_wps"]) + roof
        if row["kind"] == "rnnlm04b":
            t.update(cold_start_s=None, warm_start_s=res["warm"], rnnlm04b={k: res[k] for k in ("words_per_sec",
                                                                                              "train", "test")})
        else:
            t.update(cold_start_s=cold.get((row["kind"], row["threads"])),
                     warm_start_s=warm.get(row["model"]) if row["kind"] != "torch" else None,
                     runs_wps=res.get("runs_wps"), probes=res.get("probes"))
            th = theirs.get(row["model"])
            if th:
                t["vs_rnnlm04b_train"] = res["train_wps"] / th["train_wps"]
                if res.get("eval_wps") and th["eval_wps"]:
                    t["vs_rnnlm04b_eval"] = res["eval_wps"] / th["eval_wps"]
        out.append(t)
    return out

if __name__ == "__main__":
    raise SystemExit(main())
