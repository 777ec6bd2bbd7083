# minicpmv-edge: `make test` and `make demo` each set up .venv by themselves on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Re-install when the packaging changes; otherwise repeated runs skip pip.
STAMP := $(VENV)/.installed

DEMO := build/demo
# The MiniCPM-V version make demo runs (2.6, 4.6, 4.7, ...): `make demo MODEL_VERSION=4.6`.
MODEL_VERSION := 2.6
V := $(MODEL_VERSION)
# The loopback port of make demo's OpenAI-compatible API.
DEMO_PORT := 8089

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
	$(BIN)/minicpmv-convert make-checkpoint --model-version $(V) --size tiny --out $(DEMO)/checkpoint-$(V) --force
	$(BIN)/minicpmv-convert convert --checkpoint $(DEMO)/checkpoint-$(V) --out $(DEMO)/bundle-$(V) --target orin-nano-8gb --force
	$(BIN)/minicpmv-edge inspect --bundle $(DEMO)/bundle-$(V)
	$(BIN)/minicpmv-edge encode --bundle $(DEMO)/bundle-$(V) --scene 1920x1080 --out $(DEMO)/tokens-1920x1080.npy
	$(BIN)/minicpmv-edge bench preprocess --sizes 1920x1080 --repeats 3 --bundle $(DEMO)/bundle-$(V)
	$(BIN)/minicpmv-convert make-gguf --model-version $(V) --out $(DEMO)/llm-$(V).gguf --force
	$(BIN)/python tools/make_clip.py --out $(DEMO)/clip.avi
	bash tools/demo_up.sh $(BIN) $(DEMO) $(V) $(DEMO_PORT)
	@echo
	@echo "make demo made, in $(abspath $(DEMO)):"
	@echo "  checkpoint-$(V)/            synthetic MiniCPM-V $(V) checkpoint (tiny, vision weights only)"
	@echo "  bundle-$(V)/                bundle for orin-nano-8gb: fp32, fp16 and int8 ONNX graphs, manifest.yaml"
	@echo "  bundle-$(V)/report.html     verify's report: every precision against torch float32"
	@echo "  tokens-1920x1080.npy       the int8 tokens of a 1920x1080 scene, one block per slice"
	@echo "  llm-$(V).gguf               tiny LLM with random weights in $(V)'s architecture (make-gguf)"
	@echo "  clip.avi, agent.yaml       the demo's video (tools/make_clip.py) and agent config (llm:, api:, stream:)"
	@echo "  up.log, answer.json        minicpmv-edge up's log (agent + llm), the API's answer (random weights)"
	@echo "  tokens/                    the agent's newest tokens as .npy files"

clean:
	rm -rf build $(VENV) *.egg-info
