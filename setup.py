"""Packaging for minicpmv-edge: `converter` (host), `edge` (device) and the device profiles in `configs`."""
import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).resolve().parent


def read_version():
    """The version from edge/version.py, read as text so that building never imports the package."""
    text = (HERE / "edge" / "version.py").read_text(encoding="utf-8")
    match = re.search(r"^__version__\s*=\s*['\"]([^'\"]+)['\"]", text, re.MULTILINE)
    if match is None:
        raise RuntimeError("edge/version.py has no __version__ = \"...\" line")
    return match.group(1)


def read_long_description():
    readme = HERE / "README.md"
    return readme.read_text(encoding="utf-8") if readme.is_file() else ""


# The real TensorRT parser and builder of check-ops --build (no GPU needed): TensorRT-RTX, x86-64 Linux wheels.
TRT_CHECK = ["tensorrt-rtx-cu13-libs==1.7.1.116; platform_machine == 'x86_64' and sys_platform == 'linux'",
             "tensorrt-rtx-cu13-bindings==1.7.1.116; platform_machine == 'x86_64' and sys_platform == 'linux'"]

setup(
    name="minicpmv-edge",
    version=read_version(),
    description="MiniCPM-V's vision encoder as INT8 TensorRT engines on NVIDIA Jetson, streaming visual "
                "tokens to a quantized LLM",
    long_description=read_long_description(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["converter*", "edge*", "configs*"]),
    package_data={"configs": ["devices/*.yaml", "tensorrt/*.yaml", "agent/*.yaml"],
                  "edge.web": ["static/*.html", "static/*.js", "static/*.css"]},  # the page (edge/web/)
    # The units and snippets `minicpmv-edge install` and `flash-overlay` write (edge/deploy/layout.py finds them).
    data_files=[("share/minicpmv-edge/systemd", sorted("systemd/" + p.name for p in (HERE / "systemd").glob("*")
                                                       if p.suffix in (".service", ".sysusers", ".tmpfiles")))],
    python_requires=">=3.8",
    install_requires=["numpy", "pyyaml"],
    extras_require={
        "host": ["torch>=2.4", "onnx>=1.15", "onnxruntime>=1.17", "safetensors>=0.4", "pillow", "tqdm"],
        # prometheus-client: the agent's and the LLM process's metrics (0.20: start_http_server returns its server).
        "edge": ["numpy", "pyyaml", "onnx", "onnxruntime", "pillow", "prometheus-client>=0.20"],
        "camera": ["opencv-python"],
        "jetson": ["jetson-stats", "pycuda"],
        # llama.cpp for the LLM process (raw image rows through its low-level API); pinned because those bindings
        # follow llama.cpp's C API, which changes between releases. No wheel on PyPI: pip compiles it (minutes).
        # paho-mqtt: the alerts' MQTT sink (2.x: the CallbackAPIVersion client).
        "llm": ["llama-cpp-python==0.3.36", "gguf", "paho-mqtt>=2.0,<3"],
        "trt-check": TRT_CHECK,
        # openai: the client the LLM process's API is tested with. jetson-stats: the monitor is tested against its
        # real JtopServer (tests/edge/monitor/); psutil: the reference for the fallback's RAM figures; selenium: the
        # web page is tested in Debian's headless Chromium through its chromedriver (make system-deps).
        "dev": ["pytest", "ruff", "vermin", "openai", "transformers>=4.45", "pillow", "opencv-python-headless",
                "jetson-stats==7.2.2", "psutil", "selenium>=4.20", *TRT_CHECK],
    },
    entry_points={
        "console_scripts": [
            "minicpmv-convert=converter.cli:main",
            "minicpmv-edge=edge.cli:main",
        ],
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "Operating System :: POSIX :: Linux",
    ],
)
