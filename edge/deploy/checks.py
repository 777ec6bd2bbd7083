"""What install and flash-overlay refuse before writing anything: a root filesystem of another L4T release, a
bundle made for another device, a program the services could not start."""
from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from typing import Optional

from ..bundle.manifest import Bundle
from ..device.facts import l4t_release
from ..device.profiles import DeviceProfile
from ..errors import InputError
from .layout import HIDDEN, under


def rootfs_release(rootfs: Path) -> str:
    """The L4T release of a Jetson root filesystem ("36.4.0"), or an InputError saying how to get one."""
    if not rootfs.is_dir():
        raise InputError("rootfs %s does not exist: pass --rootfs Linux_for_Tegra/rootfs with the sample root "
                         "filesystem unpacked into it" % rootfs)
    release = l4t_release(rootfs / "etc" / "nv_tegra_release")
    if release is None:
        raise InputError("%s has no L4T release in etc/nv_tegra_release: run sudo ./apply_binaries.sh in "
                         "Linux_for_Tegra first" % rootfs)
    return release


def same_release(found: str, wanted: str) -> bool:
    """Whether L4T `found` ("36.4.3") is release `wanted` ("36.4"): major and minor equal."""
    return found.split(".")[:2] == wanted.split(".")[:2]


def check_bundle_for(bundle: Bundle, profile: DeviceProfile, release: str, where: Path) -> None:
    """Refuse a bundle made for another profile, a profile that is no Jetson, and an L4T release (`release`, read
    from `where`) other than the bundle's (its target's JetPack, else the profile's)."""
    if bundle.target.profile != profile.name:
        raise InputError("bundle %s was made for %s, not %s: convert it with minicpmv-convert convert --target %s"
                         % (bundle.path, bundle.target.profile, profile.name, profile.name))
    wanted = bundle.target.l4t or profile.l4t
    if wanted is None:
        raise InputError("profile %s is not a Jetson (no L4T release): pass a Jetson profile as --device"
                         % profile.name)
    check_release(release, wanted, where)


def check_release(release: str, wanted: str, where: Path) -> None:
    """Refuse L4T `release` found at `where` unless it is `wanted`."""
    if not same_release(release, wanted):
        raise InputError("%s is L4T %s but the bundle is for L4T %s: use a Jetson Linux R%s root filesystem, or "
                         "convert the bundle with minicpmv-convert convert --jetpack (the JetPack of L4T %s)"
                         % (where, release, wanted, wanted, ".".join(release.split(".")[:2])))


def device_release(root: Path) -> Optional[str]:
    """The L4T release of the system under `root`, None when it is not a Jetson."""
    return l4t_release(root / "etc" / "nv_tegra_release")


def check_program(program: PurePosixPath, host_path: Path) -> None:
    """Refuse a program the services could not start: missing at `host_path`, or where ProtectHome hides it."""
    if under(program, HIDDEN):
        raise InputError("%s is under %s, which the services cannot see (ProtectHome=yes): install minicpmv-edge "
                         "in a venv under /opt and pass its bin/minicpmv-edge as --program"
                         % (program, ", ".join(map(str, HIDDEN))))
    if not (host_path.is_file() and os.access(str(host_path), os.X_OK)):
        raise InputError("%s is not an executable minicpmv-edge: pass --program with the minicpmv-edge of the "
                         "venv the services should run" % host_path)


def check_writable(folder: Path, how: str) -> None:
    """Refuse a root folder this user cannot write (a rootfs or / without sudo)."""
    if not os.access(str(folder), os.W_OK):
        raise InputError("cannot write to %s: %s" % (folder, how))
