#!/usr/bin/env bash
# The prepared commands for a lent GPU machine (see README.md here and ../../shared/GPU.md).
#
#   first call,  carry [".whl", "runs/gpu"], timeout_s 560:  bash benchmarks/gpu/run_on_device.sh
#   second call (same warm machine), timeout_s 300:         bash benchmarks/gpu/run_on_device.sh install nve
#
# Arguments choose the stages (default: install build op-tests gpu-checks speed); the install stage is cheap
# and sets up the environment every later stage needs, so name it in every call.
# .whl/ holds the openmm / openmmtorch wheels for Python 3.12 + CUDA 13 (GPU.md says how to download them);
# runs/gpu/ holds the NVE state of earlier GPU sessions, so the 1 ns run continues where it stopped.
# Every stage has its own time limit and writes under $OUT as it goes; a failed stage does not stop the next.
# Limits of the default stages: 20 + 200 + 60 + 120 + 120 s, for one 560 s call.
set -u
OUT=${OUT:-$PWD/out}
mkdir -p "$OUT"
started=$(date +%s)
stages=${*:-install build op-tests gpu-checks speed}
want() { case " $stages " in *" $1 "*) echo "== $1 ($(( $(date +%s) - started )) s)" | tee -a "$OUT/stages.log";;
         *) return 1;; esac; }

if want install; then
timeout 20 python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl \
  > "$OUT/install.log" 2>&1 || echo "wheel install failed" >> "$OUT/stages.log"
export PYTHONPATH=/tmp/site:$PWD/python
# openmmtorch's wheel names libnvrtc.so.12 but calls nothing in it; the torch there ships CUDA 13
mkdir -p /tmp/stub && echo 'void nvrtc12_unused(void){}' | gcc -shared -fPIC -x c - -o /tmp/stub/libnvrtc.so.12
export LD_LIBRARY_PATH=/tmp/stub:${LD_LIBRARY_PATH:-}
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
fi

if want build; then  # the native op with its CUDA kernels, against the torch that is there
  MAX_JOBS=16 EQUIFORCE_BUILD_CUDA=1 timeout 200 python3 setup.py build_ext --inplace > "$OUT/build.log" 2>&1 \
    || echo "build failed (see build.log)" >> "$OUT/stages.log"
fi

if want op-tests; then  # the neighbour-list tests, CUDA ones included (they skip without a GPU)
  timeout 60 python3 -m pytest -q -x --noconftest tests/test_neighbor_op.py > "$OUT/op_tests.log" 2>&1
  tail -3 "$OUT/op_tests.log" >> "$OUT/stages.log"
fi

if want gpu-checks; then  # plugin load, tiny TorchForce, op vs CPU, ms/step with/without CUDA graphs, bare model
  timeout 120 python3 benchmarks/gpu/gpu_checks.py --device cuda --out "$OUT/gpu_checks.json" \
    > "$OUT/gpu_checks.log" 2>&1
fi

if want speed; then  # the speed benchmark on the CUDA platform (no peers: nequip/openmm-ml are not there)
  timeout 120 python3 -m equiforce bench speed --platform CUDA --molecules 32 128 512 2048 8192 \
    --out "$OUT/speed_cuda.json" > "$OUT/speed.log" 2>&1
fi

if want nve; then  # float64, 0.5 fs, 96 atoms, toward 1 ns; resumes from runs/gpu/nve (state comes back in $OUT)
  minutes=${NVE_MINUTES:-4}
  mkdir -p runs/gpu/nve && cp -r runs/gpu/nve "$OUT/nve_work"
  [ -f runs/gpu/nve_cuda.json ] && cp runs/gpu/nve_cuda.json "$OUT/nve_cuda.json"
  timeout $(( minutes * 60 + 60 )) python3 -m equiforce bench nve --platform CUDA --methods equiforce \
    --dtypes float64 --molecules 32 --timesteps 0.5 --duration 1000 --work "$OUT/nve_work" \
    --out "$OUT/nve_cuda.json" --max-minutes "$minutes" > "$OUT/nve.log" 2>&1
fi
echo "== done ($(( $(date +%s) - started )) s)" >> "$OUT/stages.log"
