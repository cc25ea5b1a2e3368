#!/usr/bin/env bash
# Issue 12's recipe search on a lent GPU (one call of the device tool): many quick-profile variants trained at
# once on phantom v2, validation split only. Not part of make paper or make test. On a GPU the numbers are
# not bitwise those of the 2-core CPU (no deterministic algorithms there; train.amp=false keeps float32), so a
# recipe chosen here is confirmed by a CPU run before the quick profile takes it.
#
#   OUT="$OUT" bash experiments/gpu_grid.sh            # on the GPU machine ($OUT is the device tool's)
#   DEVICE=cpu PROFILE=smoke ONLY="g00 g01" DEADLINE=60 OUT=grid-out bash experiments/gpu_grid.sh   # a dry run
#
# Training runs are stopped (SIGINT: the trainer keeps what it has) DEADLINE seconds after the start; each
# run's history.csv holds every finished epoch. Then every run's best epoch is diagnosed on the validation
# split (experiments/diagnose_val.py) and the histories, logs and diagnoses are packed into $OUT/grid.tar.gz.
set -u
OUT=${OUT:?set OUT}
DEVICE=${DEVICE:-cuda}
PROFILE=${PROFILE:-quick}
DEADLINE=${DEADLINE:-450}
DIAGNOSE_SECONDS=${DIAGNOSE_SECONDS:-60}
ONLY=${ONLY:-}
T0=$(date +%s)
WORK=${WORK:-$(mktemp -d -t bonetumor-grid.XXXX)}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
export BONETUMOR_DATA=$WORK/data BONETUMOR_RUNS=$WORK/runs
PY=${PY:-python3}
mkdir -p "$OUT" "$WORK/logs" "$WORK/runs"

S32="--set model.rpn_batch_size_per_image=32 --set model.box_batch_size_per_image=32"
# name | epochs | settings over the profile (every run: float32, no loader workers)
GRID="
g00_base|24|
g01_s32|24|$S32
g02_s32_e48|48|$S32
g03_base_e48|48|
g04_s32_n2400_e12|12|$S32 --set data.phantom_images=2400
g05_s32_n2400_e6|6|$S32 --set data.phantom_images=2400
g06_base_n2400_e12|12|--set data.phantom_images=2400
g07_s32_w025|24|$S32 --set model.width=0.25
g08_s32_lr5e-4|24|$S32 --set train.lr=0.0005
g09_s32_sgd_lr02|24|$S32 --set train.optimizer=sgd --set train.lr=0.02
g10_s32_384|24|$S32 --set data.image_size=384
g11_s32_512|24|$S32 --set data.phantom_size=512 --set data.image_size=512
g12_s32_pre|24|$S32 --set data.preprocess=true
g13_s8_16|24|--set model.rpn_batch_size_per_image=8 --set model.box_batch_size_per_image=16
"
selected() { [ -z "$ONLY" ] || [[ " $ONLY " == *" ${1%%_*} "* ]]; }

# 1. Every dataset the grid reads, written, resized and preprocessed once before any run starts (runs
#    preparing the same folder at once would race). One process per phantom folder.
prepare_args() { echo "$1" | tr ' ' '\n' | grep '^data\.' | grep -v '^data\.image_size\|^data\.preprocess' | sort | tr '\n' ' '; }
declare -A groups
while IFS='|' read -r name epochs sets; do
  [ -n "$name" ] && selected "$name" || continue
  key="k:$(prepare_args "$(echo $sets | sed 's/--set //g')")"
  groups[$key]+="$(echo $sets | sed 's/--set //g' | tr ' ' '\n' | grep '^data\.' | tr '\n' ' ');"
done <<< "$GRID"
for key in "${!groups[@]}"; do
  (printf '%s' "${groups[$key]}" | tr ';' '\n' | sort -u | while read -r data_sets; do
     $PY -c "
import sys
from bonetumor import config, pipeline
settings = config.load('$PROFILE', overrides=config.parse_overrides(sys.argv[1:]))
prepared = pipeline.prepare(settings, progress=False)
print('prepared', settings.data_path.name, settings.data.image_size, 'preprocess' if settings.data.preprocess else '',
      {k: len(v) for k, v in prepared.splits.items()})
" $data_sets
   done) >> "$WORK/logs/prepare.log" 2>&1 &
done
wait
cat "$WORK/logs/prepare.log"
echo "data ready after $(( $(date +%s) - T0 )) s"

# 2. The runs, all at once, each stopped at the deadline.
left=$(( DEADLINE - ($(date +%s) - T0) ))
while IFS='|' read -r name epochs sets; do
  [ -n "$name" ] && selected "$name" || continue
  timeout --signal=INT --kill-after=20 "$left" $PY -m bonetumor.train --profile "$PROFILE" --device "$DEVICE" \
    --no-progress --epochs "$epochs" --set train.amp=false --set train.num_workers=0 $sets \
    --out "$WORK/runs/$name" > "$WORK/logs/$name.log" 2>&1 &
done <<< "$GRID"
wait
echo "training stopped after $(( $(date +%s) - T0 )) s"

# 3. Each run's best epoch on the validation split (box AP50 and tumour AUC at score floor 0.001).
for run in "$WORK"/runs/*/; do
  name=$(basename "$run")
  timeout "$DIAGNOSE_SECONDS" $PY experiments/diagnose_val.py "$run" --device "$DEVICE" \
    > "$WORK/logs/$name.diagnose.json" 2> "$WORK/logs/$name.diagnose.err" &
done
wait

# 4. Summary (stdout and $OUT/summary.txt) and everything packed.
$PY - "$WORK" <<'EOF' | tee "$OUT/summary.txt"
import json, sys
from pathlib import Path
import pandas as pd
work = Path(sys.argv[1])
for run in sorted((work / "runs").iterdir()):
    row = {"run": run.name}
    hist = run / "history.csv"
    if hist.is_file() and len(h := pd.read_csv(hist)) and h["val_ap50"].notna().any():
        best = h["val_ap50"].idxmax()
        row.update(epochs=len(h), best_ap50=round(float(h["val_ap50"].max()), 4), best_epoch=int(h.loc[best, "epoch"]),
                   last_ap50=round(float(h["val_ap50"].iloc[-1]), 4),
                   objectness=f"{h['loss_objectness'].iloc[0]:.3f}->{h['loss_objectness'].iloc[-1]:.3f}",
                   img_s=round(float(h["images_per_s"].median()), 1), s_epoch=round(float(h["seconds"].median()), 1))
    diag = work / "logs" / f"{run.name}.diagnose.json"
    try:
        d = json.loads(diag.read_text().strip().splitlines()[-1])
        row.update(diag_ap50=round(d["box_ap50"], 4), tumour_auc=round(d["tumour_auc"], 3))
    except Exception as exc:
        row["diagnose"] = f"none ({type(exc).__name__})"
    print(row)
EOF
for log in "$WORK"/logs/*.log; do grep -l "Traceback\|error" "$log" >/dev/null && { echo "== $log"; tail -5 "$log"; }; done
tar -czf "$OUT/grid.tar.gz" -C "$WORK" logs $(cd "$WORK" && ls -d runs/*/history.csv runs/*/run.json 2>/dev/null)
echo "done after $(( $(date +%s) - T0 )) s"
