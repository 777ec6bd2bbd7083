#!/usr/bin/env bash
# make demo, second half: the agent and the LLM process together (`minicpmv-edge up`) on the demo clip, one question
# through the API with curl and one with the openai client, then stop both and print the statistics.
# Usage: tools/demo_up.sh BIN DEMO [VERSION [PORT]] (the venv's bin folder; the demo folder with bundle-VERSION,
# llm-VERSION.gguf and clip.avi; the MiniCPM-V version, default 2.6; the API's loopback port, default 8089).
# Every wait is bounded; `up` and its children are stopped on every way out, failures included.
set -euo pipefail
BIN=$1
DEMO=$2
VERSION=${3:-2.6}
PORT=${4:-8089}
API=http://127.0.0.1:$PORT/v1
LOG=$DEMO/up.log
QUESTION='What is in the picture?'

cat > "$DEMO/agent.yaml" <<YAML
# Written by make demo (tools/demo_up.sh): the demo clip, ONNX Runtime, the tokens on a Unix socket in this folder.
bundle: bundle-$VERSION
camera: {kind: file, path: clip.avi, loop: true}
backend: onnxruntime
sink: {directory: tokens, keep: 20}
stream: {enabled: true, socket: tokens.sock}
llm: {gguf: llm-$VERSION.gguf, ctx: 4096, max_tokens: 16}
api: {listen: "127.0.0.1:$PORT"}
YAML

UP_PID=
stop_up() {
    if [ -n "$UP_PID" ] && kill -0 "$UP_PID" 2>/dev/null; then
        kill -TERM "$UP_PID"
        wait "$UP_PID" || true  # 143: stopped by SIGTERM, as asked
    fi
    UP_PID=
}
trap stop_up EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "starting: minicpmv-edge up --config $DEMO/agent.yaml (log: $LOG)"
timeout -s TERM 600 "$BIN/minicpmv-edge" up --config "$DEMO/agent.yaml" > "$LOG" 2>&1 &
UP_PID=$!
ready=
for _ in $(seq 240); do  # up to 120 s for the agent's first frame to reach the LLM process
    kill -0 "$UP_PID" 2>/dev/null || { cat "$LOG"; echo "demo: minicpmv-edge up ended early (log above)"; exit 1; }
    if curl -s -m 20 "$API/chat/completions" -d '{"messages": [{"role": "user", "content": "ready?"}],
            "max_tokens": 1}' | grep -q '"frame": {'; then ready=1; break; fi
    sleep 0.5
done
[ -n "$ready" ] || { cat "$LOG"; echo "demo: no answer about a camera frame within 120 s (log above)"; exit 1; }

echo
echo "NOTE: the LLM and the vision encoder have RANDOM weights (synthetic checkpoint, make-gguf): the answers are"
echo "      random tokens. They show that frames -> tokens -> stream -> llama.cpp -> API works, not what it sees."
echo
BODY="{\"messages\": [{\"role\": \"user\", \"content\": \"$QUESTION\"}], \"max_tokens\": 16}"
echo "curl -s $API/chat/completions -d '$BODY'"
curl -s -m 120 "$API/chat/completions" -d "$BODY" > "$DEMO/answer.json"
"$BIN/python" -c '
import json, sys
reply = json.load(open(sys.argv[1]))
print("answer (curl, random weights): %r about camera frame %d" % (reply["choices"][0]["message"]["content"],
                                                                 reply["frame"]["frame_id"]))' "$DEMO/answer.json"
timeout 120 "$BIN/python" -c '
from openai import OpenAI
client = OpenAI(base_url="'"$API"'", api_key="unused-on-loopback")
text = "".join(chunk.choices[0].delta.content or "" for chunk in client.chat.completions.create(
    model=client.models.list().data[0].id, stream=True, max_tokens=16,
    messages=[{"role": "user", "content": "'"$QUESTION"'"}]))
print("answer (openai client, streamed, random weights): %r" % text)
import base64, io
import numpy as np
from PIL import Image
photo = io.BytesIO()
Image.fromarray(np.random.default_rng(7).integers(0, 256, (300, 400, 3), dtype=np.uint8)).save(photo, "PNG")
uri = "data:image/png;base64," + base64.b64encode(photo.getvalue()).decode()
text = "".join(chunk.choices[0].delta.content or "" for chunk in client.chat.completions.create(
    model=client.models.list().data[0].id, stream=True, max_tokens=16, messages=[{"role": "user", "content": [
        {"type": "text", "text": "What is in this photo?"}, {"type": "image_url", "image_url": {"url": uri}}]}]))
print("answer about a 400x300 PNG data URI, encoded by the agent (openai client, random weights): %r" % text)'

echo
echo "stopping the agent and the LLM process (SIGTERM to up)"
stop_up
echo "statistics:"
grep -E '^\[agent\] (frames |stream: |images encoded)|^\[up\]' "$LOG" | sed 's/^/  /' || echo "  (none in $LOG)"
echo "profile of the agent on the clip (ONNX Runtime, 5 frames):"
timeout 300 "$BIN/minicpmv-edge" profile --config "$DEMO/agent.yaml" --frames 5 | sed 's/^/  /'
