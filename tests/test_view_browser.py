"""The trajectory page in a real headless Chromium (Debian's `chromium` and `chromium-driver`), opened over file://:
the slider, the arrow keys, play to the end, the sample picker, no console errors, and a screenshot of a
side-by-side page under the test's tmp dir. Skipped, saying why, only where Chromium or its driver is absent."""

import os
import shutil
import time

import pytest

from elfctl.cli import main
from viewer_files import EIGHT, FOUR, MASKED, frames_of, header, write_samples

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
# CI sets ELFCTL_REQUIRE_BROWSER=1 after installing Chromium: there a missing browser fails instead of skipping
REQUIRED = os.environ.get("ELFCTL_REQUIRE_BROWSER") == "1"
if REQUIRED and (CHROMIUM is None or DRIVER is None):
    raise RuntimeError("ELFCTL_REQUIRE_BROWSER=1 but chromium/chromedriver is not on PATH")
if not REQUIRED:
    pytest.importorskip("selenium", reason="selenium is not installed (pip install -e '.[test]')")
pytestmark = pytest.mark.skipif(CHROMIUM is None or DRIVER is None,
                                reason="headless Chromium is not installed here (apt-get install chromium "
                                       "chromium-driver); CI installs it")


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1400,900", f"--user-data-dir={tmp_path / 'profile'}"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    try:
        yield driver
    finally:
        driver.quit()


def _shown(driver, panel: int) -> str:
    return driver.execute_script(f"return document.getElementById('canvas-{panel}').textContent")


def _severe(driver) -> list:
    return [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


def test_slider_keys_play_and_screenshot(browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select, WebDriverWait

    a = write_samples(tmp_path / "ode4.jsonl", header(4, num=2),
                      [{"text": "the x cat d", "trajectory": frames_of(FOUR)},
                       {"text": "the cat sat", "trajectory": frames_of(MASKED)}])
    b = write_samples(tmp_path / "sde8.jsonl", header(8, sampler="sde", gamma=1.5),
                      [{"text": "one two three four", "trajectory": frames_of(EIGHT)},
                       {"text": "one", "trajectory": frames_of([["x"]] * 7 + [["one"]])}])
    page = tmp_path / "side.html"
    assert main(["view", str(a), str(b), "--out", str(page)]) == 0
    browser.get(page.as_uri())
    assert _severe(browser) == []
    slider = browser.find_element(By.ID, "slider")
    assert slider.get_attribute("max") == "7"  # 8 times on the shared axis

    # frame 0 (time 1/8): the 8-step draw shows its first frame; the 4-step one has not started
    assert _shown(browser, 1) == "one" and _shown(browser, 0) == ""
    # step the slider with its own arrow keys to k = 5 (time 6/8): the 4-step draw is at its frame 2
    browser.execute_script("arguments[0].focus()", slider)
    for _ in range(5):
        slider.send_keys(Keys.ARROW_RIGHT)
    assert slider.get_attribute("value") == "5"
    assert _shown(browser, 0) == "".join(FOUR[2]) and _shown(browser, 1) == "".join(EIGHT[5])
    canvas = browser.find_element(By.ID, "canvas-1")
    assert canvas.get_attribute("data-step") == "5"
    # the change marks: EIGHT[5] added " four" at position 3 only
    marks = browser.execute_script("return [...document.querySelectorAll('#canvas-1 .tok')].map(s => s.className)")
    assert marks == ["tok same", "tok same", "tok same", "tok chg"]
    # the page's own arrow keys (focus elsewhere) step one frame back
    browser.find_element(By.TAG_NAME, "h1").click()
    browser.find_element(By.TAG_NAME, "body").send_keys(Keys.ARROW_LEFT)
    assert slider.get_attribute("value") == "4" and _shown(browser, 1) == "".join(EIGHT[4])

    # play to the end: the last frame of both draws, and the button back to Play
    Select(browser.find_element(By.ID, "speed")).select_by_visible_text("fastest")
    browser.find_element(By.ID, "play").click()
    WebDriverWait(browser, 20).until(lambda d: d.find_element(By.ID, "slider").get_attribute("value") == "7"
                                     and "Play" in d.find_element(By.ID, "play").text)
    assert _shown(browser, 0) == "".join(FOUR[3]) and _shown(browser, 1) == "".join(EIGHT[7])

    # the second sample: a masked canvas in panel 0, drawn as boxes
    Select(browser.find_element(By.ID, "sample")).select_by_index(1)
    assert _shown(browser, 0) == "".join(MASKED[3]) and _shown(browser, 1) == "one"
    browser.find_element(By.ID, "prev").click()
    browser.find_element(By.ID, "prev").click()  # time 6/8: the 4-step draw's frame 2
    assert _shown(browser, 0) == "".join(MASKED[2])
    assert len(browser.find_elements(By.CSS_SELECTOR, "#canvas-0 .tok.mask")) == 1

    shot = tmp_path / "side_by_side.png"
    assert browser.save_screenshot(str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    time.sleep(0.1)
    assert _severe(browser) == []


def test_a_long_sequence_wraps_inside_its_panel(browser, tmp_path):
    from selenium.webdriver.common.by import By

    long = [["word"] + [f" w{i}" for i in range(1500)]]
    f = write_samples(tmp_path / "long.jsonl", header(1), [{"text": "x", "trajectory": frames_of(long)}])
    page = tmp_path / "long.html"
    assert main(["view", str(f), "--out", str(page)]) == 0
    browser.get(page.as_uri())
    canvas = browser.find_element(By.ID, "canvas-0")
    assert _shown(browser, 0) == "".join(long[0])
    width = browser.execute_script("return [arguments[0].scrollWidth, arguments[0].clientWidth]", canvas)
    assert width[0] <= width[1]  # no horizontal overflow: the text wraps
    assert _severe(browser) == []
