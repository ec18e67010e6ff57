#!/usr/bin/env bash
# Independent replicas of NVE cases: the same protocol as benchmarks/results/nve_round4.json (20 ps, one thread,
# shipped round-4 file) with other seeds (box, classical start, NVT noise), one JSON per seed:
# benchmarks/results/nve_round4_seed<S>.json. Resumable: rerun the same command and it continues (finished cases
# are skipped, the case in progress resumes from runs/bench/nve_round4/). Two instances may run at once
# (one per core): each takes the cases the other has not claimed.
#
#   bash benchmarks/nve_replicas.sh "2 3 4" "equiforce:float64:0.5:128" "equiforce:float64:0.25:32"
#   .venv/bin/python benchmarks/nve_replicas.py benchmarks/results/nve_round4.json \
#       benchmarks/results/nve_round4_seed*.json    # combine the seeds into nve_replicas.{json,md,png}
set -euo pipefail
cd "$(dirname "$0")/.."
seeds=$1; shift
model=recipes/water/models/water-gfn2-round4.pt
for spec in "$@"; do
  IFS=: read -r method dtype dt molecules <<<"$spec"
  for seed in $seeds; do
    extra=()
    [ "$method" = equiforce ] && extra=(--dtypes "$dtype")
    .venv/bin/equiforce bench nve --model "$model" --threads 1 --seed "$seed" --methods "$method" "${extra[@]}" \
      --timesteps "$dt" --molecules "$molecules" --work runs/bench/nve_round4 \
      --out "benchmarks/results/nve_round4_seed${seed}.json"
  done
done
