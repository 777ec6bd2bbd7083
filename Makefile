# minicpmv-edge: `make test` and `make demo` each set up .venv by themselves on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Re-install when the packaging changes; otherwise repeated runs skip pip.
STAMP := $(VENV)/.installed

DEMO := build/demo

# Debian packages the tests use as references: GStreamer's own parser reads the camera pipelines back. Installed
# only where missing, only as root with apt-get; elsewhere those tests skip and say what to install.
GST_PACKAGES := python3-gi gir1.2-gstreamer-1.0 gstreamer1.0-plugins-good
# systemd's own tools check the units (systemd-analyze verify / security, systemd-sysusers, systemd-tmpfiles).
SYSTEMD_PACKAGES := systemd
# The MQTT broker the alerts' MQTT sink is tested against (started by the tests on a free loopback port).
MQTT_PACKAGES := mosquitto
# The web page's browser test: Debian's Chromium and its chromedriver (selenium drives them; nothing is downloaded).
BROWSER_PACKAGES := chromium chromium-driver

.PHONY: test lint demo clean venv system-deps

venv: $(STAMP)

# llm compiles llama.cpp the first time (about 9 minutes on 2 cores), then pip reuses the cached wheel.
# torch first, pinned: the CPU wheel on this disk, before anything that depends on torch could pull a CUDA one.
$(STAMP): setup.py pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install torch==2.13.0
	$(BIN)/pip install -e '.[host,edge,dev,llm]'
	touch $@

lint: $(STAMP)
	$(BIN)/ruff check .

# $(call need,TEST,PACKAGES,WHAT): install PACKAGES with apt-get unless the shell TEST passes; only as root where
# apt-get exists, otherwise say which tests will skip.
define need
	@if $(1); then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    $(2) >/dev/null; \
	else echo "not installing $(2) (needs root and apt-get): $(3) will skip"; fi
endef

GST_CHECK := /usr/bin/python3 -c "import gi; gi.require_version('Gst', '1.0'); from gi.repository import Gst; \
	Gst.init(None); assert Gst.ElementFactory.find('rtspsrc')" 2>/dev/null

system-deps:
	$(call need,$(GST_CHECK),$(GST_PACKAGES),the GStreamer parse tests)
	$(call need,command -v systemd-analyze >/dev/null,$(SYSTEMD_PACKAGES),the unit tests)
	$(call need,command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ],$(MQTT_PACKAGES),the MQTT alert tests)
	$(call need,command -v chromedriver >/dev/null && command -v chromium >/dev/null,$(BROWSER_PACKAGES),the browser test)

test: $(STAMP) system-deps
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

demo: $(STAMP)
	$(BIN)/minicpmv-convert make-checkpoint --model-version 2.6 --size tiny --out $(DEMO)/checkpoint-2.6 --force
	$(BIN)/minicpmv-convert convert --checkpoint $(DEMO)/checkpoint-2.6 --out $(DEMO)/bundle-2.6 --target orin-nano-8gb --force
	$(BIN)/minicpmv-edge inspect --bundle $(DEMO)/bundle-2.6
	$(BIN)/minicpmv-edge encode --bundle $(DEMO)/bundle-2.6 --scene 1920x1080 --out $(DEMO)/tokens-1920x1080.npy
	$(BIN)/minicpmv-edge bench preprocess --sizes 1920x1080 --repeats 3 --bundle $(DEMO)/bundle-2.6
	$(BIN)/minicpmv-convert make-gguf --model-version 2.6 --out $(DEMO)/llm-2.6.gguf --force
	$(BIN)/python tools/make_clip.py --out $(DEMO)/clip.avi
	bash tools/demo_up.sh $(BIN) $(DEMO)
	@echo
	@echo "make demo made, in $(abspath $(DEMO)):"
	@echo "  checkpoint-2.6/            synthetic MiniCPM-V 2.6 checkpoint (tiny, vision weights only)"
	@echo "  bundle-2.6/                bundle for orin-nano-8gb: fp32, fp16 and int8 ONNX graphs, manifest.yaml"
	@echo "  bundle-2.6/report.html     verify's report: every precision against torch float32"
	@echo "  tokens-1920x1080.npy       the int8 tokens of a 1920x1080 scene, one block per slice"
	@echo "  llm-2.6.gguf               tiny LLM with random weights in 2.6's architecture (make-gguf)"
	@echo "  clip.avi, agent.yaml       the demo's video (tools/make_clip.py) and agent config (llm:, api:, stream:)"
	@echo "  up.log, answer.json        minicpmv-edge up's log (agent + llm), the API's answer (random weights)"
	@echo "  tokens/                    the agent's newest tokens as .npy files"

clean:
	rm -rf build $(VENV) *.egg-info
