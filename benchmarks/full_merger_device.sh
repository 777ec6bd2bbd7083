#!/usr/bin/env bash
# Full-size MiniCPM-V 4.6 (synthetic --size full weights) on a many-core machine: export the fp32 graphs for
# orin-nano-4gb, int8 calibration without the search (2 scenes, 1 held-out), check-ops against TensorRT 10.3.
# "16x" first; "4x" only while the run is young enough to finish inside one 10-minute command.
#   bash benchmarks/full_merger_device.sh OUTDIR
set -u
out=${1:?usage: full_merger_device.sh OUTDIR}
work=/tmp/full46
mkdir -p "$out" "$work"
export PYTHONPATH=$PWD
start=$(date +%s)
since() { echo $(( $(date +%s) - start )); }
echo "cores $(nproc); $(python3 -c 'import onnxruntime, torch; print("onnxruntime", onnxruntime.__version__, "torch", torch.__version__)')"
python3 -m converter.cli make-checkpoint --model-version 4.6 --size full --out $work/ck --force
echo "make-checkpoint done at $(since) s"
for mode in 16x 4x; do
  if [ "$mode" = 4x ] && [ "$(since)" -gt 170 ]; then echo "4x skipped: $(since) s used"; break; fi
  /usr/bin/time -f "export $mode: %e s, %M KB peak RSS" python3 -m converter.cli export --checkpoint $work/ck \
      --out $work/b-$mode --target orin-nano-4gb --precision fp32 --downsample-mode $mode --force --json \
      > "$out/export-$mode.json" 2> $work/export-$mode.log
  tail -1 $work/export-$mode.log
  /usr/bin/time -f "calibrate $mode: %e s, %M KB peak RSS" python3 -m converter.cli calibrate --bundle $work/b-$mode \
      --count 2 --eval-images 1 --no-search --json > "$out/calibrate-$mode.json" 2> $work/calibrate-$mode.log
  grep -E "int8 chain|calibrate $mode" $work/calibrate-$mode.log
  python3 -m converter.cli check-ops --bundle $work/b-$mode --json > "$out/check-ops-$mode.json"
  echo "check-ops $mode exit $? at $(since) s"
  ls -l $work/b-$mode/*/ | grep onnx
done
