#!/usr/bin/env bash
# PTB, hidden 100, 100 classes, --bptt 4 --bptt-block 10, 3 epochs (equal tokens): the per-word
# schedule on 1 and 2 Ray workers against 1 and 2 threads (docs/distributed.md). Usage:
#   scripts/distributed_ptb.sh [PTB_DIR] [OUT_DIR]      (ONLY="workers2 threads2" runs just those)
set -euo pipefail
PTB="${1:-../shared/corpora/ptb}"
OUT="${2:-ptb-distributed}"
mkdir -p "$OUT"
common=(--train "$PTB/train.txt" --valid "$PTB/valid.txt" --hidden 100 --classes 100 --bptt 4
        --bptt-block 10 --max-epochs 3 --force --checkpoint-words 0)
run() {   # NAME OPTIONS...
    local name=$1; shift
    if [ -n "${ONLY:-}" ] && [[ " $ONLY " != *" $name "* ]]; then return; fi
    local t0=$SECONDS
    rnnlm train "${common[@]}" --model "$OUT/$name.rnnlm" "$@" > "$OUT/$name.log" 2>&1
    echo "== $name ($*): $((SECONDS - t0)) s"
    grep -E "^epoch" "$OUT/$name.log"
}
rnnlm prepare "$PTB/train.txt" "$PTB/valid.txt" > /dev/null
run threads1 --threads 1
run workers1 --workers 1
run threads2 --threads 2
run workers2 --workers 2
run workers2-sync8192 --workers 2 --sync-words 8192
run threads2-sync8192 --threads 2 --sync-words 8192
python - "$OUT" <<'PY'
import sys
import numpy as np
from rnnlm.model.file import load_model
d = sys.argv[1]
for a, b in (("threads2", "workers2"), ("threads2-sync8192", "workers2-sync8192"), ("threads1", "workers1")):
    try:
        pa, pb = load_model(f"{d}/{a}.rnnlm").params.flat, load_model(f"{d}/{b}.rnnlm").params.flat
    except Exception as exc:
        print(f"{a} vs {b}: {exc}")
        continue
    print(f"{a} vs {b}: weights bit-identical: {np.array_equal(pa, pb)}")
PY
