#!/usr/bin/env bash
# The one prepared command for a lent GPU machine (see README.md here and ../../shared/GPU.md).
#
#   device run, carry [".whl", "runs/gpu"], timeout_s 560:   bash benchmarks/gpu/run_on_device.sh
#
# .whl/ holds the openmm / openmmtorch wheels for Python 3.12 + CUDA 13 (GPU.md says how to download them);
# runs/gpu/ holds the NVE state of earlier GPU sessions, so the 1 ns run continues where it stopped.
# Every stage has its own time limit and writes under $OUT as it goes; a failed stage does not stop the next.
# Total limits: 20 + 200 + 60 + 120 + 60 + the NVE rest, sized for one 560 s call.
set -u
OUT=${OUT:-$PWD/out}
mkdir -p "$OUT"
started=$(date +%s)
stage() { echo "== $1 ($(( $(date +%s) - started )) s)" | tee -a "$OUT/stages.log"; }

stage install
timeout 20 python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl \
  > "$OUT/install.log" 2>&1 || echo "wheel install failed" >> "$OUT/stages.log"
export PYTHONPATH=/tmp/site:$PWD/python
# openmmtorch's wheel names libnvrtc.so.12 but calls nothing in it; the torch there ships CUDA 13
mkdir -p /tmp/stub && echo 'void nvrtc12_unused(void){}' | gcc -shared -fPIC -x c - -o /tmp/stub/libnvrtc.so.12
export LD_LIBRARY_PATH=/tmp/stub:${LD_LIBRARY_PATH:-}
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1

stage build  # the native op with its CUDA kernels, against the torch that is there
MAX_JOBS=16 EQUIFORCE_BUILD_CUDA=1 timeout 200 python3 setup.py build_ext --inplace > "$OUT/build.log" 2>&1 \
  || echo "build failed (see build.log)" >> "$OUT/stages.log"

stage op-tests  # the neighbour-list tests, CUDA ones included (they skip without a GPU)
timeout 60 python3 -m pytest -q -x --noconftest tests/test_neighbor_op.py > "$OUT/op_tests.log" 2>&1
tail -3 "$OUT/op_tests.log" >> "$OUT/stages.log"

stage gpu-checks  # plugin load, tiny TorchForce, op vs CPU, OpenMM ms/step with/without CUDA graphs, bare model
timeout 120 python3 benchmarks/gpu/gpu_checks.py --device cuda --out "$OUT/gpu_checks.json" > "$OUT/gpu_checks.log" 2>&1

stage speed  # the speed benchmark on the CUDA platform (no peers there: nequip/openmm-ml are not installed)
timeout 60 python3 -m equiforce bench speed --platform CUDA --molecules 32 128 512 2048 8192 \
  --out "$OUT/speed_cuda.json" > "$OUT/speed.log" 2>&1

stage nve  # float64, 0.5 fs, 96 atoms, toward 1 ns; resumable from runs/gpu/nve (state comes back in $OUT)
left=$(( 540 - ($(date +%s) - started) ))
if [ "$left" -gt 60 ]; then
  mkdir -p runs/gpu/nve && cp -r runs/gpu/nve "$OUT/nve_work"
  [ -f runs/gpu/nve_cuda.json ] && cp runs/gpu/nve_cuda.json "$OUT/nve_cuda.json"
  timeout "$left" python3 -m equiforce bench nve --platform CUDA --methods equiforce --dtypes float64 \
    --molecules 32 --timesteps 0.5 --duration 1000 --work "$OUT/nve_work" --out "$OUT/nve_cuda.json" \
    --max-minutes $(( (left - 40) / 60 )) > "$OUT/nve.log" 2>&1
fi
stage done
