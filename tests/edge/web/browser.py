"""Headless Debian Chromium through its chromedriver (selenium), for the page's browser tests; skips when either is
missing (make system-deps installs them)."""
from __future__ import annotations

import shutil
from typing import Any, Callable

import pytest

from tests.edge.camera.fakes import wait_until

WAIT_S = 120.0


def open_chromium() -> Any:
    """A headless Chromium (the system's) at 1400x1000, or a skip saying what to install."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e "
                                                                 "'.[dev]')")
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver is None:
        pytest.skip("Chromium and chromedriver are not installed (apt-get install chromium chromium-driver, or "
                    "make system-deps as root)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000",
                     "--hide-scrollbars"):
        options.add_argument(argument)
    return webdriver.Chrome(service=webdriver.ChromeService(executable_path=driver), options=options)


def wait_for(browser: Any, script: str, what: str, accept: Callable[[Any], bool] = bool) -> Any:
    """The first value of `script` (JavaScript returning a value) that `accept` takes, within WAIT_S."""
    found = []

    def check() -> bool:
        value = browser.execute_script(script)
        if accept(value):
            found.append(value)
            return True
        return False

    assert wait_until(check, WAIT_S), "the page never showed %s (%s)" % (what, script)
    return found[0]
