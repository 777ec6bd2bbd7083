"""A fake Jetson Orin NX 16GB under /fake_sys, laid out as jetson-stats reads it with JTOP_TESTING=true, and the
values the tests expect from it, worked out from the files here (not from jtop).

jtop reads most nodes under /fake_sys in testing mode, but RAM from /proc/meminfo and temperatures from
/sys/devices/virtual/thermal: the server runs in a mount namespace of its own where meminfo and devices/virtual
below are bind-mounted over those two paths (devices/virtual also holds dmi/id, where jtop on x86 reads the board's
name). nvpmodel is a script in bin/, put first on the server's PATH."""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Dict, Tuple

ROOT = Path("/fake_sys")
MARKER = ".minicpmv-edge"  # a tree this project made (one without it is someone else's: left alone)
GPU = "17000000.gpu"
INA3221 = "1-0040"
NVPMODELS = ("MAXN", "10W", "15W", "25W")  # Orin NX 16GB; default 15W
NVPMODEL_DEFAULT = 2
MEMINFO_WIDTH = 12  # every value padded to one width: meminfo is rewritten in place (it is bind-mounted by inode)

NVPMODEL_SCRIPT = """#!/bin/sh
# a stand-in for L4T's nvpmodel: -p --verbose lists the modes, -q says the current one
here=$(dirname "$0")
case "$1" in
  -p) echo "NVPM VERB: PM_CONFIG: DEFAULT=%(default_name)s(%(default)d)"
%(models)s ;;
  -q) mode=$(cat "$here/../nvpmodel_mode"); set -- %(names)s; shift "$mode"
      echo "NV Power Mode: $1"; echo "$mode" ;;
  *) exit 1 ;;
esac
"""


def write(path: Path, text: str) -> None:
    """Whole or not at all (a reader never sees half a number)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


class FakeOrin:
    """Builds the tree, changes it, and says what a reader of it should see."""

    def __init__(self, root: Path = ROOT) -> None:
        self.root = root
        self.meminfo: Dict[str, int] = {
            "MemTotal": 15_388_600, "MemFree": 9_000_000, "MemAvailable": 11_500_000, "Buffers": 120_000,
            "Cached": 2_100_000, "SwapCached": 0, "SwapTotal": 7_694_300, "SwapFree": 7_694_300,
            "SReclaimable": 180_000, "NvMapMemUsed": 1_250_000}
        # label -> (mV, mA) on the INA3221's channels 1-3; VDD_IN is the module's input (jtop's total)
        self.rails: Dict[str, Tuple[int, int]] = {
            "VDD_IN": (5_016, 1_240), "VDD_CPU_GPU_CV": (5_008, 352), "VDD_SOC": (5_000, 296)}
        # zone type -> millidegrees; -256000 is how an offline zone reads
        self.zones: Dict[str, int] = {
            "cpu-thermal": 47_312, "gpu-thermal": 45_906, "cv0-thermal": -256_000, "soc0-thermal": 44_500,
            "tj-thermal": 48_125}
        self.gpu_load_permille = 371
        self.fan_pwm = 92
        self.nvpmodel = NVPMODEL_DEFAULT

    # -- building -------------------------------------------------------------------------------------------
    def build(self) -> None:
        if self.root.exists():
            shutil.rmtree(self.root)
        self.root.mkdir()
        (self.root / MARKER).write_text("made by tests/edge/monitor\n")
        self._cpus(4)
        self._gpu()
        self._ina3221()
        self._thermal()
        self._dmi()
        self._fan()
        self._nvpmodel()
        self.meminfo_path.write_text(self._meminfo_text())

    def remove(self) -> None:
        if (self.root / MARKER).exists():
            shutil.rmtree(self.root)

    @property
    def meminfo_path(self) -> Path:
        return self.root / "meminfo"

    @property
    def virtual_dir(self) -> Path:
        return self.root / "devices" / "virtual"

    @property
    def bin_dir(self) -> Path:
        return self.root / "bin"

    def _cpus(self, count: int) -> None:
        stat = ["cpu  1000 0 500 90000 100 0 10 0 0 0"]
        for n in range(count):
            stat.append("cpu%d 250 0 125 22500 25 0 2 0 0 0" % n)
            freq = self.root / "devices" / "system" / "cpu" / ("cpu%d" % n) / "cpufreq"
            for name, value in (("scaling_governor", "schedutil"), ("scaling_min_freq", "115200"),
                                ("scaling_max_freq", "1984000"), ("scaling_cur_freq", "1190400"),
                                ("cpuinfo_min_freq", "115200"), ("cpuinfo_max_freq", "1984000"),
                                ("cpuinfo_cur_freq", "1190400")):
                write(freq / name, value + "\n")
        write(self.root / "stat", "\n".join(stat + ["ctxt 1", "btime 1", "processes 1", "procs_running 1",
                                                     "procs_blocked 0"]) + "\n")

    def _gpu(self) -> None:
        # as on the board: class/devfreq/<gpu> -> devices/platform/<gpu>/devfreq/<gpu>, whose device -> the platform
        # node holding load (per mille) and of_node/name
        device = self.root / "devices" / "platform" / GPU
        devfreq = device / "devfreq" / GPU
        write(device / "of_node" / "name", "gpu\n")
        write(device / "railgate_enable", "0\n")
        for name, value in (("cur_freq", "306000000"), ("max_freq", "918000000"), ("min_freq", "306000000"),
                            ("governor", "nvhost_podgov")):
            write(devfreq / name, value + "\n")
        os.symlink("../..", devfreq / "device")
        (self.root / "class" / "devfreq").mkdir(parents=True)
        os.symlink(os.path.relpath(devfreq, self.root / "class" / "devfreq"), self.root / "class" / "devfreq" / GPU)
        self.set_gpu_load(self.gpu_load_permille)

    def _ina3221(self) -> None:
        write(self.root / "bus" / "i2c" / "devices" / INA3221 / "name", "ina3221\n")
        for channel, label in enumerate(self.rails, start=1):
            write(self._hwmon_ina() / ("in%d_label" % channel), label + "\n")
            write(self._hwmon_ina() / ("curr%d_max" % channel), "20000\n")
            write(self._hwmon_ina() / ("curr%d_crit" % channel), "25000\n")
            self.set_rail(label, *self.rails[label])
        write(self._hwmon_ina() / "in7_label", "sum of shunt voltages\n")  # jtop skips channel 7

    def _hwmon_ina(self) -> Path:
        return self.root / "bus" / "i2c" / "devices" / INA3221 / "hwmon" / "hwmon1"

    def _thermal(self) -> None:
        for n, zone in enumerate(self.zones):
            write(self.virtual_dir / "thermal" / ("thermal_zone%d" % n) / "type", zone + "\n")
            self.set_zone(zone, self.zones[zone])

    def _dmi(self) -> None:
        # jtop on x86 names the board from devices/virtual/dmi/id, which the namespace's devices/virtual replaces
        for name, value in (("sys_vendor", "NVIDIA"), ("product_name", "Jetson Orin NX 16GB (fake)")):
            write(self.virtual_dir / "dmi" / "id" / name, value + "\n")

    def _fan(self) -> None:
        write(self.root / "class" / "hwmon" / "hwmon3" / "name", "pwmfan\n")
        self.set_fan_pwm(self.fan_pwm)

    def _nvpmodel(self) -> None:
        models = "\n".join('      echo "NVPM VERB: POWER_MODEL: ID=%d NAME=%s"' % item for item in enumerate(NVPMODELS))
        script = self.bin_dir / "nvpmodel"
        write(script, NVPMODEL_SCRIPT % {"default_name": NVPMODELS[NVPMODEL_DEFAULT], "default": NVPMODEL_DEFAULT,
                                         "models": models, "names": " ".join(NVPMODELS)})
        script.chmod(0o755)
        self.set_nvpmodel(self.nvpmodel)

    # -- changing -------------------------------------------------------------------------------------------
    def set_memory(self, **kb: int) -> None:
        self.meminfo.update(kb)
        data = self._meminfo_text().encode()
        fd = os.open(str(self.meminfo_path), os.O_WRONLY)
        try:
            os.pwrite(fd, data, 0)  # same length, same inode: the bind mount keeps seeing this file
        finally:
            os.close(fd)

    def set_rail(self, label: str, millivolt: int, milliamp: int) -> None:
        self.rails[label] = (millivolt, milliamp)
        channel = list(self.rails).index(label) + 1
        write(self._hwmon_ina() / ("in%d_input" % channel), "%d\n" % millivolt)
        write(self._hwmon_ina() / ("curr%d_input" % channel), "%d\n" % milliamp)

    def set_zone(self, zone: str, millidegrees: int) -> None:
        self.zones[zone] = millidegrees
        n = list(self.zones).index(zone)
        write(self.virtual_dir / "thermal" / ("thermal_zone%d" % n) / "temp", "%d\n" % millidegrees)

    def set_gpu_load(self, permille: int) -> None:
        self.gpu_load_permille = permille
        write(self.root / "devices" / "platform" / GPU / "load", "%d\n" % permille)

    def set_fan_pwm(self, pwm: int) -> None:
        self.fan_pwm = pwm
        write(self.root / "class" / "hwmon" / "hwmon3" / "pwm1", "%d\n" % pwm)

    def set_nvpmodel(self, mode: int) -> None:
        self.nvpmodel = mode
        write(self.root / "nvpmodel_mode", "%d\n" % mode)

    def _meminfo_text(self) -> str:
        return "".join("%-16s%*d kB\n" % (key + ":", MEMINFO_WIDTH, value) for key, value in self.meminfo.items())

    # -- expecting ------------------------------------------------------------------------------------------
    def expected(self) -> Dict[str, object]:
        """The Snapshot fields this tree should give, in the Snapshot's units."""
        m = self.meminfo
        power = {label: volt * amp / 1000.0 for label, (volt, amp) in self.rails.items()}  # mV x mA -> mW
        return {
            "ram_total_kb": m["MemTotal"], "ram_free_kb": m["MemFree"], "ram_shared_kb": m["NvMapMemUsed"],
            "ram_used_kb": m["MemTotal"] - m["MemFree"] - m["Buffers"] - m["Cached"],
            "gpu_load_pct": self.gpu_load_permille / 10.0,
            "power_total_mw": float(int(power.pop("VDD_IN"))),
            "power_rails_mw": {label: float(int(mw)) for label, mw in power.items()},
            "temperatures_c": {zone.split("-")[0]: milli / 1000.0 for zone, milli in self.zones.items()
                               if milli > -256_000},
            "nvpmodel": NVPMODELS[self.nvpmodel],
            "fan_pct": self.fan_pwm * 100.0 / 255.0,
        }

