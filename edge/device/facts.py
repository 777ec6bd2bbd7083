"""What the device says about itself (L4T release, module model), read from the files JetPack provides."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

NV_TEGRA_RELEASE = Path("/etc/nv_tegra_release")
DEVICE_TREE_MODEL = Path("/proc/device-tree/model")


def l4t_release(path: Path = NV_TEGRA_RELEASE) -> Optional[str]:
    """"36.4.3" from "# R36 (release), REVISION: 4.3, ..."; None off a Jetson."""
    try:
        text = path.read_text()
    except OSError:
        return None
    match = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", text)
    return "%s.%s" % (match.group(1), match.group(2)) if match else None


def module_model(path: Path = DEVICE_TREE_MODEL) -> Optional[str]:
    """The device tree's model string, e.g. "NVIDIA Jetson Orin Nano Developer Kit"; None off a Jetson."""
    try:
        return path.read_bytes().rstrip(b"\0").decode(errors="replace").strip() or None
    except OSError:
        return None
