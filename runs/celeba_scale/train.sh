#!/usr/bin/env bash
# Table 1 against the amount of data (reports/celeba_data_scale.md): the paper's two Table 1 models, VAE z = 32 and
# MPVAE (8, 24), trained with the shipped Table 1's recipe on the nested training sets of reference/celeba_ids/.
#
#   runs/celeba_scale/train.sh CELEBA_DIR [LANES]
#
# CELEBA_DIR: the 37,062-face combined folder (../shared/tools/celeba_extend.py) or any full CelebA: the id lists name
# the faces, so any folder that holds them gives the same runs. LANES runs go at once (default 2, one thread each).
# Every run resumes exactly where it stopped: rerun the same command. A finished run has its run.json.
# Then probe the snapshots the tables read, and write the report:
#   mpvae-curves evaluate --runs runs/celeba_scale/n* --data celeba --data-path CELEBA_DIR --chosen \
#       --train-size 1812 --valid-size 1209 --splits 5     (the shipped Table 1's probe sizes on its 3,021 faces)
#   mpvae-curves scale --notes reports/celeba_data_scale_notes.md
#
# Recipe: beta 1, Bernoulli, Adam at a constant lr 1e-4, batch 64, bf16 autocast, the same budget of 1,019,904
# images (the shipped pair's) at every size, snapshots at 2^k chunks, stopped once two snapshots came after the lowest
# validation NELBO. A chunk is the multiple of 64 nearest one pass over the set that divides the budget
# (1,019,904 = 64 x 15,936 = 64 x 64 x 249): 2,048 images for 2,000 faces (1.02 passes), 4,096 for 4,000 (1.02),
# 6,144 for 8,000 (0.77), 31,872 for 34,041 (0.94). The 15,979-face point is the shipped Table 1 (runs/celeba).
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${1:?give the CelebA folder (e.g. data/celeba37k)}; LANES=${2:-2}
OUT=runs/celeba_scale; BUDGET=${BUDGET:-1019904}
declare -A CHUNK=([2000]=2048 [4000]=4096 [8000]=6144 [34041]=31872)
# seed 0 at every size first (a first trend; the largest early), then the other seeds; a pair's two models side by side
QUEUE=${QUEUE:-"2000:0 34041:0 4000:0 8000:0 34041:1 2000:1 4000:1 8000:1 34041:2 2000:2 4000:2 8000:2"}

run() {   # size seed model
  local n=$1 s=$2 m=$3 nn dims d
  nn=$(printf %05d "$n"); [ "$m" = baseline ] && dims=32 || dims="8 24"
  d=$OUT/n$nn/${m}_seed$s
  mkdir -p "$d"
  echo "$(date +%T) start n$nn ${m}_seed$s" >> "$d/train.log"
  .venv/bin/mpvae-train --data celeba --data-path "$DATA" --train-ids "reference/celeba_ids/train_$nn.txt" \
      --latent-dims $dims --betas 1 --lr 1e-4 --bs 64 --precision bf16 --threads 1 --seed "$s" \
      --chunk-images "${CHUNK[$n]}" --stop-images "$BUDGET" --stop-rising 2 --out "$d" >> "$d/train.log" 2>&1
}

lane() {   # take the next unclaimed, unfinished run until none is left
  for q in $QUEUE; do for m in baseline mpvae; do
    local n=${q%:*} s=${q#*:}
    [ -f "$OUT/n$(printf %05d "$n")/${m}_seed$s/run.json" ] && continue
    mkdir "$OUT/.claims/$n-$s-$m" 2>/dev/null || continue
    run "$n" "$s" "$m" || echo "$(date +%T) n$n ${m}_seed$s failed: see its train.log" >&2
  done; done
}

rm -rf "$OUT/.claims"; mkdir -p "$OUT/.claims"
for i in $(seq "$LANES"); do lane & sleep 2; done
wait
