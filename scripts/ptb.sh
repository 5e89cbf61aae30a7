#!/usr/bin/env bash
# Penn Treebank recipe: train our Elman RNNLMs end to end and print a results table beside the
# published single-model figures (Mikolov's PTB, 10k vocabulary).
#
#   scripts/ptb.sh [--ptb DIR] [--out DIR] [--only NAME[,NAME...]] [--threads N] [--ablations] [--no-kn5]
#                  [--reuse]
#
# PTB comes from ../shared/corpora/ptb (train.txt, valid.txt, test.txt) unless --ptb is given.
# Protocol: every setting (here: the dynamic-evaluation learning rate, and in the configurations
# below: hidden size, dropout, min-improvement) is chosen on valid.txt; test.txt is read only by the
# final `rnnlm eval` of each model. Dynamic evaluation scores each word before learning from it.
# Each model is also interpolated word by word with the repository's own Kneser-Ney 5-gram
# (`rnnlm kn-prob --order 5`, fitted on train.txt): lambda is chosen on valid.txt (grid 0.00-1.00 by
# 0.01, once for the static and once for the dynamic RNN), then test.txt is read once with it.
# Results go to OUT/results.jsonl (one JSON object per model) and the table to stdout. Models whose
# arguments include --threads 2 need both cores to themselves for their speed to mean anything.
# --ablations also trains the models that chose the settings (no dropout, other rates, input
# dropout, direct connections): about 1 h 30 min more on one core. --no-kn5 skips the interpolation.
# --reuse evaluates again a model this script trained in OUT with the same arguments (no retraining).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
PTB=$HERE/../../shared/corpora/ptb
OUT=$(cd "$HERE/.." && pwd)/runs/ptb
ONLY=""
THREADS=1
ABLATIONS=0
KN5=1
REUSE=0
PY=${PYTHON:-python3}
while [ $# -gt 0 ]; do
    case $1 in
        --ptb) PTB=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --only) ONLY=$2; shift 2 ;;
        --threads) THREADS=$2; shift 2 ;;
        --ablations) ABLATIONS=1; shift ;;
        --no-kn5) KN5=0; shift ;;
        --reuse) REUSE=1; shift ;;
        -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "ptb.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
for split in train valid test; do
    if [ ! -f "$PTB/$split.txt" ]; then
        echo "ptb.sh: $PTB/$split.txt not found; give the PTB directory with --ptb DIR" >&2
        exit 1
    fi
done
command -v rnnlm >/dev/null || { echo "ptb.sh: the rnnlm command is not installed (pip install -e .)" >&2; exit 1; }
mkdir -p "$OUT"
DYN_RATES="0.01 0.02 0.03 0.05 0.1"

# train NAME ARGS...: train one model, evaluate it on valid (static and each dynamic rate), pick the
# dynamic rate on valid, then evaluate on test once static and once with that rate.
train() {
    local name=$1; shift
    if [ -n "$ONLY" ] && [[ ",$ONLY," != *",$name,"* ]]; then return 0; fi
    local model=$OUT/$name.rnnlm
    echo "== $name: rnnlm train $*" >&2
    local t0 t1
    if [ "$REUSE" = 1 ] && [ -f "$model" ] && [ -f "$OUT/$name.args" ] && [ "$(cat "$OUT/$name.args")" = "$*" ]; then
        echo "   (--reuse: evaluating the model an earlier run trained with these arguments)" >&2
        read -r t0 t1 < "$OUT/$name.time"
    else
        rm -f "$OUT/$name.args" "$OUT/$name.time"
        t0=$(date +%s.%N)
        rnnlm train --train "$PTB/train.txt" --valid "$PTB/valid.txt" --model "$model" --force \
            --threads "$THREADS" "$@" >&2
        t1=$(date +%s.%N)
        echo "$t0 $t1" > "$OUT/$name.time"
        echo "$*" > "$OUT/$name.args"
    fi
    rnnlm eval "$model" "$PTB/valid.txt" --json > "$OUT/$name.valid.json"
    : > "$OUT/$name.valid-dynamic.jsonl"
    for lr in $DYN_RATES; do
        rnnlm eval "$model" "$PTB/valid.txt" --json --dynamic "$lr" >> "$OUT/$name.valid-dynamic.jsonl"
    done
    local best
    best=$("$PY" -c 'import json,sys; r=[json.loads(l) for l in open(sys.argv[1])]; print(min(r, key=lambda d: d["perplexity"])["dynamic"])' \
        "$OUT/$name.valid-dynamic.jsonl")
    rnnlm eval "$model" "$PTB/test.txt" --json > "$OUT/$name.test.json"
    rnnlm eval "$model" "$PTB/test.txt" --json --dynamic "$best" > "$OUT/$name.test-dynamic.json"
    rm -f "$OUT/$name.kn5.json"
    if [ "$KN5" = 1 ]; then kn5 "$name" "$model" "$best"; fi
    "$PY" - "$name" "$model" "$OUT" "$t0" "$t1" "$*" <<'EOF'
import json, statistics, sys
name, model, out, t0, t1, args = sys.argv[1:]
j = lambda f: json.load(open(f"{out}/{name}.{f}.json"))
dyn = min((json.loads(l) for l in open(f"{out}/{name}.valid-dynamic.jsonl")), key=lambda d: d["perplexity"])
log = [json.loads(l) for l in open(model + ".log.jsonl")]
ep = [e for e in log if "words_per_second" in e]
row = dict(name=name, args=args, epochs=len(ep), seconds=float(t1) - float(t0),
           words_per_second=statistics.median(e["words_per_second"] for e in ep),
           valid=j("valid")["perplexity"], test=j("test")["perplexity"],
           dynamic_lr=dyn["dynamic"], valid_dynamic=dyn["perplexity"], test_dynamic=j("test-dynamic")["perplexity"])
try:
    row["kn5"] = j("kn5")
except FileNotFoundError:
    pass
with open(f"{out}/results.jsonl", "a") as fh:
    fh.write(json.dumps(row) + "\n")
EOF
}

# kn5 NAME MODEL DYN_LR: the Kneser-Ney 5-gram's per-word probabilities of valid and test (computed
# once per OUT: every model here has the vocabulary of train.txt), lambda chosen on valid for the static
# RNN and for the RNN with dynamic rate DYN_LR, then test evaluated once with each; OUT/NAME.kn5.json.
kn5() {
    local name=$1 model=$2 dyn=$3 split
    for split in valid test; do
        if [ ! -s "$OUT/kn5.$split.prob" ]; then
            echo "== kn5: rnnlm kn-prob $model train.txt $split.txt --order 5" >&2
            rnnlm kn-prob "$model" "$PTB/train.txt" "$PTB/$split.txt" --order 5 > "$OUT/kn5.$split.prob.tmp"
            mv "$OUT/kn5.$split.prob.tmp" "$OUT/kn5.$split.prob"
        fi
    done
    rnnlm eval "$model" "$PTB/valid.txt" --json --per-word > "$OUT/$name.valid-words.json"
    rnnlm eval "$model" "$PTB/valid.txt" --json --per-word --dynamic "$dyn" > "$OUT/$name.valid-dynamic-words.json"
    local lams
    lams=$("$PY" - "$OUT/$name.valid-words.json" "$OUT/$name.valid-dynamic-words.json" "$OUT/kn5.valid.prob" <<'EOF'
import json, sys
import numpy as np
kn = np.loadtxt(sys.argv[3], dtype=np.float64, ndmin=1)
out = []
for f in sys.argv[1:3]:
    w = json.load(open(f))["per_word"]
    keep = np.array([e["index"] >= 0 for e in w])
    p = np.array([e["prob"] for e in w])[keep]
    grid = np.round(np.arange(0, 101) / 100, 2)
    ent = [-np.log(l * p + (1 - l) * kn[keep]).mean() for l in grid]
    out.append(f"{grid[int(np.argmin(ent))]:g}")
print(" ".join(out))
EOF
)
    local lam=${lams% *} lamd=${lams#* }
    rnnlm eval "$model" "$PTB/valid.txt" --json --lm-prob "$OUT/kn5.valid.prob" --lambda "$lam" > "$OUT/$name.valid-kn5.json"
    rnnlm eval "$model" "$PTB/valid.txt" --json --lm-prob "$OUT/kn5.valid.prob" --lambda "$lamd" --dynamic "$dyn" \
        > "$OUT/$name.valid-dynamic-kn5.json"
    rnnlm eval "$model" "$PTB/test.txt" --json --lm-prob "$OUT/kn5.test.prob" --lambda "$lam" > "$OUT/$name.test-kn5.json"
    rnnlm eval "$model" "$PTB/test.txt" --json --lm-prob "$OUT/kn5.test.prob" --lambda "$lamd" --dynamic "$dyn" \
        > "$OUT/$name.test-dynamic-kn5.json"
    "$PY" - "$OUT" "$name" <<'EOF'
import json, sys
out, name = sys.argv[1:]
j = lambda f: json.load(open(f"{out}/{name}.{f}.json"))
v, vd, t, td = j("valid-kn5"), j("valid-dynamic-kn5"), j("test-kn5"), j("test-dynamic-kn5")
json.dump(dict(lam=v["interpolated"]["lam"], valid=v["interpolated"]["perplexity"], test=t["interpolated"]["perplexity"],
               lam_dynamic=vd["interpolated"]["lam"], valid_dynamic=vd["interpolated"]["perplexity"],
               test_dynamic=td["interpolated"]["perplexity"], kn5_valid=v["other"]["perplexity"],
               kn5_test=t["other"]["perplexity"]), open(f"{out}/{name}.kn5.json", "w"))
EOF
}

# ---------------------------------------------------------------------------- the models
# rnnlm-0.4b's classic configuration (its own schedule), min-improvement chosen on valid
train h100 --hidden 100 --classes 100 --bptt 4 --bptt-block 10 --min-improvement 1.001
# fast models (the speed comparison with faster-rnnlm): a smaller per-word model, on one thread and on
# two (two text shards merged every 2048 words), and the minibatch schedule (32 streams x 4 steps)
train h50 --hidden 50 --classes 100 --bptt 4 --bptt-block 10 --min-improvement 1.001
train h50-2threads --hidden 50 --classes 100 --bptt 4 --bptt-block 10 --min-improvement 1.001 --threads 2
train batch-h100 --hidden 100 --classes 100 --schedule batch --batch-size 32 --bptt 4 \
    --min-improvement 1.001 --max-epochs 40
train batch-h100-2threads --hidden 100 --classes 100 --schedule batch --batch-size 32 --bptt 4 \
    --min-improvement 1.001 --max-epochs 40 --threads 2
train batch-h200 --hidden 200 --classes 100 --schedule batch --batch-size 32 --bptt 4 \
    --min-improvement 1.001 --max-epochs 40
train batch-h200-2threads --hidden 200 --classes 100 --schedule batch --batch-size 32 --bptt 4 \
    --min-improvement 1.001 --max-epochs 40 --threads 2
# averaged SGD (--asgd: where rnnlm-0.4b's rule would start halving, the rate is kept and the weights
# averaged after every chunk; validation and the model use the average; halving comes after)
train h100-asgd --hidden 100 --classes 100 --bptt 4 --bptt-block 10 --min-improvement 1.001 --asgd \
    --max-epochs 40
# wider sigmoid layers with dropout on the state the output layer reads (rates chosen on valid:
# hidden 200: 0.2 (input dropout did not help there); hidden 400: 0.3, valid 126.91 against 127.53
# with 0.4)
train h400-dropout --hidden 400 --classes 100 --bptt 4 --bptt-block 10 --min-improvement 1.001 \
    --dropout 0.3 --max-epochs 40
train h600-dropout --hidden 600 --classes 100 --bptt 4 --bptt-block 10 --min-improvement 1.001 \
    --dropout 0.5 --max-epochs 40
train h400-dropout-asgd --hidden 400 --classes 100 --bptt 4 --bptt-block 10 --min-improvement 1.001 \
    --dropout 0.3 --asgd --max-epochs 40

# ---------------------------------------------------------------------------- ablations (--ablations)
if [ "$ABLATIONS" = 1 ]; then
    C="--classes 100 --bptt 4 --bptt-block 10 --min-improvement 1.001"
    train abl-h200 --hidden 200 $C
    train abl-h200-dropout0.2 --hidden 200 $C --dropout 0.2 --max-epochs 40
    train abl-h200-dropout0.2-input0.2 --hidden 200 $C --dropout 0.2 --dropout-input 0.2 --max-epochs 40
    train abl-h200-direct4 --hidden 200 $C --direct 4 --direct-order 4
    train abl-h400 --hidden 400 $C
    train abl-h400-dropout0.4 --hidden 400 $C --dropout 0.4 --max-epochs 40
fi

# ---------------------------------------------------------------------------- the table
"$PY" - "$OUT" <<'EOF'
import json, os, sys, time
out = sys.argv[1]
rows = {}
for line in open(os.path.join(out, "results.jsonl")):
    r = json.loads(line)
    rows[r["name"]] = r          # the latest run of each model
print(f"PTB test perplexity, {time.strftime('%Y-%m-%d')}, {os.uname().nodename} ({os.cpu_count()} cores)\n")
print("| model | valid | test | valid, dynamic | test, dynamic (lr) | epochs | train time | words/s |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for r in rows.values():
    s = r["seconds"]
    print(f"| rnnlm `{r['name']}`: `{r['args']}` | {r['valid']:.2f} | {r['test']:.2f} | {r['valid_dynamic']:.2f} | "
          f"{r['test_dynamic']:.2f} ({r['dynamic_lr']:g}) | {r['epochs']} | {int(s // 60)} min {s % 60:.0f} s | "
          f"{r['words_per_second']:,.0f} |")
print("| rnnlm-0.4b hidden 100, 100 classes, bptt 4 (this machine, anchors.md) | | 149.37 | | | 13 | 4 min 26 s | 47,000 |")
print("| rnnlm-0.4b hidden 200 (this machine, anchors.md) | | 143.94 | | | 13 | 11 min 55 s | 17,600 |")
print("| faster-rnnlm hidden 100, NCE (anchors.md) | | 152.90 | | | 14 | | 125,000 |")
print("| Kneser-Ney 5-gram (published) | | 141.2 | | | | | |")
print("| RNNLM (published, Mikolov's thesis) | | 124.7 | | 123.2 | | | |")
kn = [r for r in rows.values() if "kn5" in r]
if kn:
    print("\nInterpolated word by word with the Kneser-Ney 5-gram (`rnnlm kn-prob --order 5`); lambda (the RNN's "
          "weight) chosen on valid\n")
    print("| model | lambda | valid | test | lambda, dynamic | valid, dynamic | test, dynamic |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    k = kn[0]["kn5"]
    print(f"| Kneser-Ney 5-gram alone (`rnnlm.use.ngram`) | | {k['kn5_valid']:.2f} | {k['kn5_test']:.2f} | | | |")
    for r in kn:
        k = r["kn5"]
        print(f"| `{r['name']}` + KN5 | {k['lam']:g} | {k['valid']:.2f} | {k['test']:.2f} | {k['lam_dynamic']:g} | "
              f"{k['valid_dynamic']:.2f} | {k['test_dynamic']:.2f} ({r['dynamic_lr']:g}) |")
    print("| RNNLM + KN5 (published, Mikolov's thesis) | | | 105.7 | | | |")
EOF
