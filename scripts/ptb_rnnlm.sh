#!/usr/bin/env bash
# PTB with rnnlm-0.4b's classic configuration: hidden 100, 100 classes, -bptt 4 -bptt-block 10,
# its learning-rate schedule. rnnlm-0.4b itself reaches test PPL 149.37 with these settings here.
#
#   scripts/ptb_rnnlm.sh [PTB_DIR] [OUT_DIR] [extra rnnlm train options...]
#
# PTB_DIR defaults to ../shared/corpora/ptb (train.txt, valid.txt, test.txt); OUT_DIR to runs/ptb.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
ptb="${1:-$here/../shared/corpora/ptb}"
out="${2:-$here/runs/ptb}"
shift $(( $# > 2 ? 2 : $# ))
for f in train valid test; do
  if [ ! -f "$ptb/$f.txt" ]; then
    echo "ptb_rnnlm.sh: $ptb/$f.txt not found; give the PTB directory as the first argument" >&2
    exit 1
  fi
done
mkdir -p "$out"
model="$out/h100-c100-bptt4.rnnlm"
start=$(date +%s)
rnnlm train --train "$ptb/train.txt" --valid "$ptb/valid.txt" --model "$model" --force \
  --hidden 100 --classes 100 --bptt 4 --bptt-block 10 --seed 1 --threads 1 "$@"
end=$(date +%s)
echo
echo "test:"
rnnlm eval "$model" "$ptb/test.txt"
echo "training wall time: $((end - start)) s on $(nproc) cores, $(date -u +%Y-%m-%d)"
