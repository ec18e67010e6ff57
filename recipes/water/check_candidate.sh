#!/usr/bin/env bash
# The checks a candidate water model passes before it may replace the shipped one, in order, each resumable:
#
#   bash recipes/water/check_candidate.sh NAME MODEL CONFIG [STAGE ...]
#   e.g. bash recipes/water/check_candidate.sh round4 runs/water-gfn2-round4/water-gfn2-round4.pt \
#            recipes/water/train_water_round4.yaml
#
# Stages (default: errors validate nve):
#   errors    held-out errors of the shipped file (round 4 since 2026-12-02), candidate 1 (shipped before it)
#             and MODEL on the frames no split held
#             (finetune.py evaluate -> benchmarks/results/<config's output_dir>_errors.json); minutes
#   validate  NVT 100 ps at 300 K and at 400 K (validate.py), the two runs as two one-thread processes side by
#             side -> benchmarks/results/validation_NAME, state in runs/validate_NAME; ~45 min
#   nve       384-atom NVE, 0.5 and 1 fs, float64 and float32, 20 ps (equiforce bench nve), two one-thread
#             processes sharing the cases -> benchmarks/results/nve_NAME.{json,md,png}, state in
#             runs/bench/nve_NAME; ~2 h
# A stage killed part way (a session ends) continues where it stopped when the same command is run again.
# The shipping criteria (recipes/water/README.md): liquid held-out errors under 1 meV/atom and 40 meV/Å,
# 100 ps at 300 and 400 K with no broken molecule, and float64 NVE at 0.5 fs with no detectable drift (round 4:
# +0.0058 +- 0.0047 kT/ns/dof at 384 atoms, 1.2 errors; the error from segment slopes, docs/benchmarks.md).
set -euo pipefail
if [ $# -lt 3 ]; then sed -n 2,17p "$0"; exit 2; fi
name=$1 model=$2 config=$3
shift 3
stages=${*:-errors validate nve}
python=${PYTHON:-.venv/bin/python}
[ -f "$model" ] || { echo "check_candidate: no model file $model" >&2; exit 2; }
[ -f "$config" ] || { echo "check_candidate: no training config $config" >&2; exit 2; }
export OMP_NUM_THREADS=1 OPENMM_CPU_THREADS=1  # two one-thread processes on the two cores

for stage in $stages; do
  echo "== $stage ($(date +%H:%M))"
  case $stage in
    errors)
      OMP_NUM_THREADS=2 "$python" recipes/water/finetune.py evaluate --config "$config" --models \
        python/equiforce/models/water-gfn2.pt recipes/water/models/water-gfn2-candidate1.pt "$model" ;;
    validate)
      common=(--model "$model" --work "runs/validate_$name" --results "benchmarks/results/validation_$name"
              --threads 1)
      "$python" recipes/water/validate.py "${common[@]}" --runs nvt-300 &
      first=$!
      "$python" recipes/water/validate.py "${common[@]}" --runs nvt-400
      wait $first
      "$python" recipes/water/validate.py "${common[@]}" --runs nvt-300 nvt-400 --analyse-only ;;
    nve)
      common=(bench nve --molecules 128 --methods equiforce --timesteps 0.5 1.0 --model "$model"
              --out "benchmarks/results/nve_$name.json" --work "runs/bench/nve_$name" --threads 1)
      "$python" -m equiforce "${common[@]}" --dtypes float64 float32 &
      first=$!
      sleep 30  # the first process claims its case before the second looks
      "$python" -m equiforce "${common[@]}" --dtypes float32 float64
      wait $first
      "$python" -m equiforce "${common[@]}" --dtypes float64 float32 --replot ;;
    *) echo "check_candidate: unknown stage $stage (errors, validate, nve)" >&2; exit 2 ;;
  esac
done
echo "== done ($(date +%H:%M))"
