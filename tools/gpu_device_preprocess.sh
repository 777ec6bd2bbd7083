#!/usr/bin/env bash
# Issue 15 must-show on a GPU machine (docs/benchmarks.md, "Issue 15: preprocessing on the GPU"): build pycuda from
# the wheels in .whl/ (docs/tensorrt.md, "Building pycuda on an offline x86 GPU machine"), run the device
# preprocessing tests with real pycuda, then the benchmark. Run from the repository root.
set -euo pipefail
SITE=${SITE:-/tmp/site}
WHL=${WHL:-.whl}  # the pycuda sdist and its pure-Python needs
if ! PYTHONPATH=$SITE python3 -c "import pycuda.driver" 2>/dev/null; then
    start=$(date +%s)
    python3 -m pip install -q --no-index --no-deps --no-compile --target "$SITE" "$WHL"/*.whl
    CUDA_ROOT=/usr/local/cuda python3 -m pip install -q --no-build-isolation --no-deps --no-index --target "$SITE" \
        "$WHL"/pycuda-2026.1.tar.gz
    echo "pycuda built in $(( $(date +%s) - start )) s"
fi
export PYTHONPATH=$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH} MINICPMV_REAL_PYCUDA=1 PATH=/usr/local/cuda/bin:$PATH
export MINICPMV_EDGE_KERNEL_CACHE=${MINICPMV_EDGE_KERNEL_CACHE:-/tmp/minicpmv-kernels}
python3 -c "import PIL, numpy; print('Pillow', PIL.__version__, 'numpy', numpy.__version__)"
python3 -m edge.cli doctor | grep -A1 preprocessing || true
OUT=${OUT:-/tmp/device-preprocess-out}
mkdir -p "$OUT"
GPU_TESTS=tests/edge/preprocess/test_device_preprocess_gpu.py
# the parity tests first, then the benchmark, then the slower tests that build bundles
python3 -m pytest -q -p no:cacheprovider $GPU_TESTS -k "not encoder and not tensorrt" -rA --durations=5 \
    2>&1 | tee "$OUT/pytest-parity.txt" || echo "parity tests FAILED"
for dtype in float32 float16; do
    python3 -m edge.cli bench device-preprocess --size 1920x1080 --repeats 50 --dtype $dtype --json \
        | tee "$OUT/bench-$dtype.json" || echo "bench $dtype FAILED"
done
python3 -m pytest -q -p no:cacheprovider $GPU_TESTS -k "encoder or tensorrt" -rA --durations=5 \
    2>&1 | tee "$OUT/pytest-encoder.txt" || echo "encoder tests FAILED"
