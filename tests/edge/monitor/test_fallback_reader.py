"""The fallback reader against psutil (which parses meminfo by itself) and against thermal zones written here."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from edge.monitor.fallback_reader import FallbackReader, Nvml, read_meminfo, read_thermal_zones

psutil = pytest.importorskip("psutil", reason="psutil is not installed (pip install -e '.[dev]'): the reference")

MEMINFO = Path("/proc/meminfo")


@pytest.fixture
def frozen_procfs(tmp_path, monkeypatch) -> Path:
    """A copy of this machine's /proc/meminfo, taken once, that psutil reads too (its PROCFS_PATH)."""
    if not MEMINFO.is_file():
        pytest.skip("no /proc/meminfo (not Linux)")
    shutil.copyfile(MEMINFO, tmp_path / "meminfo")
    monkeypatch.setattr(psutil, "PROCFS_PATH", str(tmp_path))
    return tmp_path


def test_ram_equals_psutil_on_the_same_meminfo(frozen_procfs, tmp_path):
    snapshot = FallbackReader(meminfo=frozen_procfs / "meminfo", thermal=tmp_path / "none").read()
    memory = psutil.virtual_memory()
    assert snapshot.source == "fallback" and snapshot.degraded is None
    assert snapshot.ram_total_kb * 1024 == memory.total
    assert snapshot.ram_free_kb * 1024 == memory.free
    # jtop's used: total - free - buffers - Cached; psutil's cached also holds SReclaimable
    reclaimable = read_meminfo(frozen_procfs / "meminfo").get("SReclaimable", 0)
    assert snapshot.ram_used_kb * 1024 == memory.total - memory.free - memory.buffers - (memory.cached
                                                                                         - reclaimable * 1024)
    assert snapshot.ram_shared_kb is None  # NvMapMemUsed exists only on a Jetson


def test_live_ram_total_is_psutils():
    if not MEMINFO.is_file():
        pytest.skip("no /proc/meminfo (not Linux)")
    snapshot = FallbackReader.open().read()
    assert snapshot.ram_total_kb * 1024 == psutil.virtual_memory().total
    assert 0 < snapshot.ram_used_fraction < 1


def test_jetson_meminfo_gives_the_gpus_nvmap_memory(tmp_path):
    (tmp_path / "meminfo").write_text("MemTotal:        7619000 kB\nMemFree:         1000000 kB\nBuffers:           "
                                      "20000 kB\nCached:          2000000 kB\nNvMapMemUsed:    1234567 kB\n"
                                      "HugePages_Total:       0\n")
    snapshot = FallbackReader(meminfo=tmp_path / "meminfo", thermal=tmp_path).read()
    assert (snapshot.ram_total_kb, snapshot.ram_free_kb, snapshot.ram_used_kb, snapshot.ram_shared_kb) == (
        7619000, 1000000, 7619000 - 1000000 - 20000 - 2000000, 1234567)


def test_thermal_zones_in_celsius_offline_and_unreadable_left_out(tmp_path):
    zones = {0: ("cpu-thermal", "47312"), 1: ("gpu-thermal", "45906"), 2: ("cv0-thermal", "-256000"),
             3: ("soc0-thermal", "not a number"), 4: ("CPU_therm", "39000"), 5: ("cpu-thermal", "51000")}
    for n, (kind, temp) in zones.items():
        zone = tmp_path / ("thermal_zone%d" % n)
        zone.mkdir()
        (zone / "type").write_text(kind + "\n")
        (zone / "temp").write_text(temp + "\n")
    (tmp_path / "cooling_device0").mkdir()
    assert read_thermal_zones(tmp_path) == {"cpu": 47.312, "gpu": 45.906, "CPU": 39.0, "cpu5": 51.0}
    snapshot = FallbackReader(meminfo=tmp_path / "absent", thermal=tmp_path).read()
    assert snapshot.hottest_c == 51.0
    assert snapshot.ram_total_kb is None  # meminfo unreadable: RAM unknown, the rest still read


def test_live_thermal_zones_match_sysfs():
    root = Path("/sys/class/thermal")
    expected = {}
    for zone in sorted(root.glob("thermal_zone*")):
        try:
            expected[zone] = int((zone / "temp").read_text()) / 1000.0
        except (OSError, ValueError):
            continue
    # every zone read, none invented (values move between the two reads: only their count and range are compared)
    got = read_thermal_zones(root)
    assert len(got) == len([c for c in expected.values() if c > -256.0])
    assert all(-40.0 < c < 150.0 for c in got.values())


def nvml_works() -> bool:
    pynvml = pytest.importorskip("pynvml", reason="pynvml (nvidia-ml-py) is not installed")
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return False
    pynvml.nvmlShutdown()
    return True


def test_without_nvml_no_gpu_fields():
    if nvml_works():
        pytest.skip("NVML finds a GPU here: test_nvml_agrees_with_nvidia_smi covers it")
    assert Nvml.open() is None
    snapshot = FallbackReader.open().read()
    assert snapshot.gpu_load_pct is None and snapshot.power_rails_mw == {}


def test_nvml_agrees_with_nvidia_smi():
    if not nvml_works() or shutil.which("nvidia-smi") is None:
        pytest.skip("no NVIDIA GPU (NVML does not start, or no nvidia-smi): nothing to read")
    reader = FallbackReader.open()
    try:
        snapshot = reader.read()
    finally:
        reader.close()
    out = subprocess.run(["nvidia-smi", "-i", "0", "--query-gpu=utilization.gpu,power.draw",
                          "--format=csv,noheader,nounits"], capture_output=True, text=True, check=True).stdout
    load, watts = (float(value) for value in out.split(","))
    # two reads a moment apart of values that move: agreement within a band, not equality
    assert abs(snapshot.gpu_load_pct - load) <= 10.0
    assert snapshot.power_rails_mw["GPU"] == pytest.approx(watts * 1000.0, rel=0.2, abs=15_000.0)
