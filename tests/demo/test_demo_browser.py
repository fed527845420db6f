"""`semedit demo` in a real browser: headless Debian Chromium driven by Selenium and Debian's chromedriver.

The server runs in a subprocess on a free localhost port with the embedded default (offline). Without
chromium/chromedriver the tests skip, except under CI, where they fail: CI must install them (.ci/run).
Set SEMEDIT_DEMO_SCREENSHOTS=docs to refresh the README's screenshots (docs/demo-*.png).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

# A server process and a browser: left out of `make test-fast` with the other multi-process tests.
pytestmark = pytest.mark.multiprocess

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
START_TIMEOUT = 150  # seconds: importing torch + gradio and building the models on a busy 2-core machine
WAIT = 60  # seconds for one page action (an inversion of 20 steps takes a few seconds)


def _require_browser() -> None:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not (Path(p).exists() or shutil.which(Path(p).name))]
    try:
        import selenium  # noqa: F401
    except ModuleNotFoundError:
        missing.append("the selenium Python package")
    if missing:
        reason = (f"browser tests need {', '.join(missing)} (apt-get install chromium chromium-driver; "
                  "pip install selenium)")
        if os.environ.get("CI"):
            pytest.fail(reason + " — CI is set, so this is a failure, not a skip")
        pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    _require_browser()
    port = _free_port()
    tmp = tmp_path_factory.mktemp("demo")
    env = dict(os.environ, OMP_NUM_THREADS="1", GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1",
               TMPDIR=str(tmp))  # the demo's temporary folder goes under this test's folder
    log = open(tmp / "server.log", "w")
    code = "import sys; from semedit.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.Popen([sys.executable, "-c", code, "demo", "--port", str(port), "--pca-samples", "16"],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + START_TIMEOUT
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the demo server exited with {proc.returncode}:\n{(tmp / 'server.log').read_text()}")
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the demo server did not answer within {START_TIMEOUT}s:\n"
                            f"{(tmp / 'server.log').read_text()}")
            time.sleep(1)
        yield {"url": url, "tmp": tmp, "log": tmp / "server.log"}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    # The demo's temporary folder (uploads, results) is removed when the server stops.
    assert not list(tmp.glob("semedit-demo-*")), "the demo left its temporary folder behind"


@pytest.fixture(scope="module")
def browser(server, tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--window-size=1280,1500"):
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(WAIT)
    try:
        driver.get(server["url"])
        _wait(driver, lambda d: d.find_elements("css selector", "#hair-run"), "the page to load")
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    from semedit.demo.app import example_photos

    return example_photos(tmp_path_factory.mktemp("photos"))


def _wait(driver, condition, what: str, timeout: float = WAIT):
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.25).until(condition)
    except Exception as err:  # selenium's TimeoutException: say what we waited for, show the page's text
        body = driver.find_element("css selector", "body").text[-2000:]
        raise AssertionError(f"timed out waiting for {what}; page text ends with:\n{body}") from err


def _fresh_page(driver, url: str) -> None:
    """A new page (a new Gradio session) with empty upload fields."""
    driver.get(url)
    _wait(driver, lambda d: d.find_elements("css selector", "#hair-run"), "the page to load")


def _upload(driver, elem_id: str, path: Path) -> None:
    field = driver.find_element("css selector", f"#{elem_id} input[type=file]")
    field.send_keys(str(path))
    _wait(driver, lambda d: path.stem in d.find_element("css selector", f"#{elem_id}").text,
          f"{path.name} to appear in #{elem_id}")


def _image_src(driver, elem_id: str) -> str | None:
    imgs = driver.find_elements("css selector", f"#{elem_id} img")
    return imgs[0].get_attribute("src") if imgs and imgs[0].get_attribute("src") else None


def _images_loaded(driver, elem_id: str, count: int = 1) -> bool:
    return bool(driver.execute_script(
        "const imgs = [...document.querySelectorAll(arguments[0])];"
        "return imgs.length >= arguments[1] && imgs.every(i => i.complete && i.naturalWidth > 0);",
        f"#{elem_id} img", count))


def _open_tab(driver, name: str) -> None:
    buttons = [b for b in driver.find_elements("css selector", "button[role=tab]") if b.text.strip() == name]
    assert buttons, f"no tab named {name!r}"
    buttons[0].click()


def _screenshot(driver, name: str, tmp: Path) -> Path:
    """A small PNG of the page; into docs/ when SEMEDIT_DEMO_SCREENSHOTS is set (README images)."""
    from PIL import Image

    folder = Path(os.environ.get("SEMEDIT_DEMO_SCREENSHOTS") or tmp)
    folder.mkdir(parents=True, exist_ok=True)
    raw = tmp / f"raw-{name}.png"
    driver.save_screenshot(str(raw))
    with Image.open(raw) as im:
        im = im.convert("RGB")
        im = im.resize((im.width * 3 // 4, im.height * 3 // 4), Image.LANCZOS)
        out = folder / f"demo-{name}.png"
        im.quantize(colors=256).save(out, optimize=True)
    return out


def test_page_serves_three_tabs_on_localhost(server, browser):
    tabs = [b.text.strip() for b in browser.find_elements("css selector", "button[role=tab]")]
    assert tabs[:3] == ["Hair transfer", "ChunkyGAN", "Generate"]
    assert "embedded default" in browser.find_element("css selector", "body").text
    assert server["url"].startswith("http://127.0.0.1:")
    log = server["log"].read_text()
    # The console names semedit's flags, not Gradio's launch() argument.
    assert f"semedit demo: open {server['url']}" in log and "--share" in log and "share=True" not in log


def test_uploads_and_examples_show_thumbnails(server, browser, photos):
    _fresh_page(browser, server["url"])
    _open_tab(browser, "Hair transfer")
    assert browser.find_elements("css selector", ".gallery img, table img, button img"), "example thumbnails"
    _upload(browser, "hair-face-upload", photos[1])
    _wait(browser, lambda d: _images_loaded(d, "hair-face-thumb"), "the thumbnail of the uploaded face photo")


def test_hair_transfer_of_the_example_photos(server, browser, photos):
    _fresh_page(browser, server["url"])
    _open_tab(browser, "Hair transfer")
    _upload(browser, "hair-face-upload", photos[0])
    _upload(browser, "hair-hair-upload", photos[1])
    browser.find_element("css selector", "#hair-run").click()
    src = _wait(browser, lambda d: _image_src(d, "hair-result"), "the transfer result image")
    assert src
    notes = _wait(browser, lambda d: d.find_element("css selector", "#hair-notes").text, "the alignment notes")
    assert "face photo:" in notes and "hair photo:" in notes
    _wait(browser, lambda d: "hair-transfer" in d.find_element("css selector", "#hair-download").text,
          "the download link")
    _wait(browser, lambda d: _images_loaded(d, "hair-result"), "the result image to load")
    # The uploads went to the demo's own temporary folder (TMPDIR of the server is this test's folder).
    assert list(server["tmp"].glob("semedit-demo-*/gradio/**/astronaut.png"))
    _screenshot(browser, "hair", server["tmp"])


def test_short_inversion_shows_its_masks(server, browser, photos):
    _fresh_page(browser, server["url"])
    _open_tab(browser, "ChunkyGAN")
    _upload(browser, "chunky-upload", photos[1])
    _set_steps(browser, 20)
    browser.find_element("css selector", "#chunky-run").click()
    _wait(browser, lambda d: "done: 20 steps" in d.find_element("css selector", "#chunky-status").text,
          "the inversion to finish")
    assert _wait(browser, lambda d: _image_src(d, "chunky-masks"), "the chunk masks")
    assert _image_src(browser, "chunky-preview")
    _wait(browser, lambda d: _images_loaded(d, "chunky-edited"), "the images to load")
    files = browser.find_element("css selector", "#chunky-download").text.replace("\n", "")  # name and suffix are separate elements
    for name in ("codes.safetensors", "masks.png", "reconstruction.png", "result.json"):
        assert name in files
    _screenshot(browser, "chunkygan", server["tmp"])


def _set_steps(driver, steps: int) -> None:
    from selenium.webdriver.common.keys import Keys

    field = driver.find_element("css selector", "#chunky-steps input[type=number]")
    field.send_keys(Keys.CONTROL, "a")
    field.send_keys(str(steps), Keys.ENTER)


def test_closing_the_page_cancels_its_inversion(server, browser, photos):
    """A 1000-step inversion (minutes here) is abandoned by closing its page: the server stops it (and
    says so in its log), and the next inversion runs at once."""
    _fresh_page(browser, server["url"])
    _open_tab(browser, "ChunkyGAN")
    _upload(browser, "chunky-upload", photos[0])
    _set_steps(browser, 1000)
    browser.find_element("css selector", "#chunky-run").click()
    _wait(browser, lambda d: "step " in d.find_element("css selector", "#chunky-status").text, "the first steps")
    browser.get("about:blank")  # the page is gone
    _wait(browser, lambda d: "inversion of astronaut stopped at step" in server["log"].read_text(),
          "the server to log that the closed page's inversion was stopped")
    _fresh_page(browser, server["url"])
    _open_tab(browser, "ChunkyGAN")
    _upload(browser, "chunky-upload", photos[0])
    _set_steps(browser, 20)
    start = time.monotonic()
    browser.find_element("css selector", "#chunky-run").click()
    _wait(browser, lambda d: "done: 20 steps" in d.find_element("css selector", "#chunky-status").text,
          "the second inversion (queued behind the first unless that one was cancelled)")
    assert time.monotonic() - start < WAIT


def test_stop_shows_where_the_inversion_stopped_and_its_partial_result(server, browser, photos):
    _fresh_page(browser, server["url"])
    _open_tab(browser, "ChunkyGAN")
    _upload(browser, "chunky-upload", photos[0])
    _set_steps(browser, 1000)
    browser.find_element("css selector", "#chunky-run").click()
    status = _wait(browser, lambda d: d.find_element("css selector", "#chunky-status").text, "the first steps")
    assert "inverting: step" in status and "%" in status  # the one progress display
    browser.find_element("css selector", "#chunky-stop").click()
    text = _wait(browser, lambda d: (t := d.find_element("css selector", "#chunky-status").text) and
                 "stopped at step" in t and t, "the inversion to stop")
    assert "partial" in text and "/ 1000" in text
    _wait(browser, lambda d: _image_src(d, "chunky-masks"), "the partial result's masks")
    files = _wait(browser, lambda d: d.find_element("css selector", "#chunky-download").text.replace("\n", ""),
                  "the partial result's files")
    assert "codes.safetensors" in files


def test_generate_tab_shows_images(server, browser):
    _open_tab(browser, "Generate")
    browser.find_element("css selector", "#generate-run").click()
    _wait(browser, lambda d: _images_loaded(d, "generate-gallery", 4), "4 generated images")
    # Every image, the last one too, lies inside the gallery (a fixed height used to clip the last row).
    clipped = browser.execute_script(
        "const g = document.querySelector('#generate-gallery').getBoundingClientRect();"
        "return [...document.querySelectorAll('#generate-gallery img')].filter(i => {"
        "  const r = i.getBoundingClientRect(); return r.bottom > g.bottom + 1 || r.right > g.right + 1; }).length;")
    assert clipped == 0
    _screenshot(browser, "generate", server["tmp"])


def test_text_file_upload_shows_an_error_and_the_server_keeps_serving(server, browser):
    bad = server["tmp"] / "notes.txt"
    bad.write_text("this is not a photo\n")
    _fresh_page(browser, server["url"])
    _open_tab(browser, "Hair transfer")
    _upload(browser, "hair-face-upload", bad)
    _upload(browser, "hair-hair-upload", bad)
    browser.find_element("css selector", "#hair-run").click()
    _wait(browser, lambda d: "notes.txt is not an image" in d.find_element("css selector", "#hair-error").text,
          "the error message next to the inputs")
    time.sleep(12)  # a toast would be gone by now; the message stays until the next action
    assert "notes.txt is not an image" in browser.find_element("css selector", "#hair-error").text
    assert "Error" not in browser.find_element("css selector", "#hair-result").text  # no unexplained badges
    with urllib.request.urlopen(server["url"], timeout=5) as r:  # still serving
        assert r.status == 200
    log = server["log"].read_text()
    assert "notes.txt is not an image" in log and "Traceback" not in log  # one line, no traceback
