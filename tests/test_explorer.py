"""The explorer: pictures and page files, and the page itself in real headless Chromium (Debian's
chromium + chromium-driver, driven by Selenium; no downloaded browser), opened from file://.

The browser test saves a screenshot and a copy of space.png for review under
test-artifacts/ (or $SOUNDSPACE_TEST_ARTIFACTS). scripts/test installs Chromium and sets
SOUNDSPACE_REQUIRE_BROWSER, so there it cannot skip.
"""
import json
import os
import re
import shutil
import time
from pathlib import Path

import pytest
from PIL import Image

from pipeline.cli import main
from .pipeline_helpers import generate_space

from .pipeline_helpers import TEST_DATASET, dataset, workflow

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(os.environ.get("SOUNDSPACE_TEST_ARTIFACTS", ROOT / "test-artifacts"))


@pytest.fixture(scope="module")
def test_space(tmp_path_factory, local_test_space):
    """A copy of the session's test space (conftest.py): these tests rewrite its pages."""
    copy = tmp_path_factory.mktemp("explorer") / local_test_space.space_dir.name
    return Path(shutil.copytree(local_test_space.space_dir, copy, symlinks=True))


def test_generate_writes_the_explorer_and_pictures(test_space):
    for name in ("index.html", "explorer-data.js", "space.png"):
        assert (test_space / name).is_file(), name
    thumbs = sorted((test_space / "thumbs").glob("*.png"))
    assert [p.stem for p in thumbs] == sorted(p.stem for p in test_space.glob("*.wav"))
    assert Image.open(test_space / "space.png").size[0] > 400
    data = (test_space / "explorer-data.js").read_text()
    payload = json.loads(data.removeprefix("window.SOUNDSPACE = ").rstrip().rstrip(";"))
    assert payload["resolution"] == 3 and len(payload["cells"]) == 9
    assert sorted(payload["audio"]) == sorted([c["name"] for c in payload["cells"]] + [
        f"inputs/{label}" for label in ("NW", "NE", "SW", "SE")])  # the cells and the inputs
    assert payload["labels"]["NW"] == "Fingered bass"
    assert "http://" not in (test_space / "index.html").read_text().replace("http://www.w3.org", "")


def test_explore_rebuilds_and_refuses_what_is_not_a_space(test_space, tmp_path, capsys):
    (test_space / "index.html").unlink()
    shutil.rmtree(test_space / "thumbs")
    assert main(["explore", str(test_space), "--no-pictures"]) == 0
    assert (test_space / "index.html").is_file() and not (test_space / "thumbs").exists()
    assert main(["explore", str(test_space)]) == 0
    assert len(list((test_space / "thumbs").glob("*.png"))) == 9
    assert main(["explore", str(tmp_path)]) == 2
    assert "holds no readable manifest.json" in capsys.readouterr().err


def test_line_space_page(tmp_path):
    data = dataset(tmp_path / "d", labels=("LEFT", "RIGHT"), resolution=4, length=0.07)
    space = generate_space(data, workflow(tmp_path), progress=False, log=lambda _: None,
                           pictures=False).space_dir
    assert (space / "index.html").is_file() and not (space / "space.png").exists()
    assert '"line": true' in (space / "explorer-data.js").read_text()


def chromium():
    """Selenium driving Debian's Chromium, or a skip (a failure under SOUNDSPACE_REQUIRE_BROWSER)."""
    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        browser = None
    if not (browser and driver):
        message = "Chromium, chromedriver or selenium missing (scripts/install-system-deps, scripts/install test)"
        if os.environ.get("SOUNDSPACE_REQUIRE_BROWSER"):
            pytest.fail(message)
        pytest.skip(message)
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1100,900",
                 "--autoplay-policy=no-user-gesture-required", "--allow-file-access-from-files"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(executable_path=driver), options=options)


# What the head both pages share gives a page: standards mode (its doctype) and the dark theme.
SHARED_HEAD = "return document.compatMode + ' ' + getComputedStyle(document.body).backgroundColor"


def wait_for(driver, script, expected, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = driver.execute_script(script)
        if value == expected:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{script} stayed {driver.execute_script(script)!r}, expected {expected!r}")


@pytest.mark.browser
def test_page_in_headless_chromium_from_file(test_space):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver = chromium()
    try:
        driver.get((test_space / "index.html").as_uri())
        assert driver.execute_script(SHARED_HEAD) == "CSS1Compat rgb(17, 17, 17)"
        cells = driver.find_elements(By.CSS_SELECTOR, "#pad .cell")
        assert len(cells) == 9
        assert [c.get_attribute("data-name") for c in cells[:3]] == ["x00_y00", "x01_y00", "x02_y00"]
        labels = [e.text for e in driver.find_elements(By.CSS_SELECTOR, ".label")]
        assert labels == ["NW: Fingered bass ▶", "NE: Nylon guitar ▶", "SW: Electric piano ▶",
                          "SE: Reed organ ▶"]  # each plays its input sound

        # Moving over a cell plays it: a buffer source started on a running AudioContext.
        ActionChains(driver).move_to_element(cells[4]).perform()
        wait_for(driver, "return window.explorer.playing", "x01_y01")
        assert driver.execute_script("return window.explorer.context.state") == "running"
        assert driver.execute_script("return window.explorer.started") >= 1
        ActionChains(driver).move_to_element(cells[8]).perform()
        wait_for(driver, "return window.explorer.playing", "x02_y02")

        # Click pins; the pointer elsewhere no longer changes the cell; arrows move it.
        cells[0].click()
        wait_for(driver, "return window.explorer.pinned && window.explorer.pinned.name", "x00_y00")
        ActionChains(driver).move_to_element(cells[5]).perform()
        time.sleep(0.2)
        assert driver.execute_script("return window.explorer.current.name") == "x00_y00"
        pad = driver.find_element(By.ID, "pad")
        pad.send_keys(Keys.ARROW_RIGHT)
        wait_for(driver, "return window.explorer.playing", "x01_y00")
        pad.send_keys(Keys.ARROW_DOWN)
        wait_for(driver, "return window.explorer.playing", "x01_y01")
        started = driver.execute_script("return window.explorer.started")
        assert started >= 5
        download = driver.find_element(By.ID, "download")
        assert download.get_attribute("download") == "x01_y01.wav"
        assert download.get_attribute("href").startswith("data:audio/wav;base64,UklGR")  # "RIFF"
        assert "x01_y01" in driver.find_element(By.ID, "status").text

        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(ARTIFACTS / "explorer-demo-test-space.png"))
        shutil.copyfile(test_space / "space.png", ARTIFACTS / "space-demo-test-space.png")
    finally:
        driver.quit()
    assert Image.open(ARTIFACTS / "explorer-demo-test-space.png").size[0] > 500


@pytest.fixture(scope="module")
def test_library(tmp_path_factory, local_small_library):
    """A copy of the session's small 2-pad, 2-pitch library of the library tests (0.1 s sounds):
    these tests rewrite its pages."""
    copy = tmp_path_factory.mktemp("library") / local_small_library.space_dir.name
    return Path(shutil.copytree(local_small_library.space_dir, copy, symlinks=True))


def test_both_pages_carry_the_one_player(test_space, test_library):
    """The audio, the embedded sounds' decoding and the fetch-and-cache code are player.js's,
    written into each page whole (a page opened from disk loads no other script) and nowhere
    else in it."""
    from importlib import resources

    player = resources.files("pipeline.explorer").joinpath("player.js").read_text()
    for page in (test_space / "index.html", test_library / "index.html"):
        text = page.read_text()
        assert text.count(player) == 1 and "{{" not in text, page
        for code in (r"new \(window\.AudioContext", r"\batob\(", r"\bfetch\(", r"\.decodeAudioData\(",
                     r"\.createBufferSource\("):
            assert len(re.findall(code, text)) == 1 and re.search(code, player), (page, code)


class Served:
    """`soundspace serve` in its own process, with the requests it logged."""

    def __init__(self, folder: Path):
        import subprocess
        import sys
        import threading

        self.process = subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", "serve", str(folder), "--port", "0"], cwd=ROOT,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.url = self.process.stdout.readline().split(" at ")[1].split()[0]
        self.lines = []
        threading.Thread(target=lambda: self.lines.extend(self.process.stderr), daemon=True).start()

    def wavs(self) -> list:
        return [line.split('"GET /')[1].split()[0] for line in list(self.lines)
                if '"GET /' in line and ".wav" in line]

    def close(self):
        self.process.terminate()
        self.process.wait(timeout=10)


def voices(driver) -> list:
    return driver.execute_script("return window.explorer.active()")


@pytest.mark.browser
def test_library_page_plays_notes_of_the_chosen_pad_over_serve(test_library):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    assert main(["explore", str(test_library), "--embed-max-mb", "0"]) == 0  # nothing embedded
    server = Served(test_library)
    driver = chromium()
    try:
        import urllib.error
        import urllib.request

        decode = next((test_library / ".decodes").glob("d048-*.wav")).name
        for private in ("library.json", "bass_guitar_keyboard_organ/manifest.json",
                        f".decodes/{decode}", "bass_guitar_keyboard_organ/p48/../../library.json"):
            with pytest.raises(urllib.error.HTTPError, match="404"):
                urllib.request.urlopen(server.url + private)
        urllib.request.urlopen(server.url + "bass_guitar_keyboard_organ/p48/x00_y00.wav").close()
        for pad in ("bass_guitar_keyboard_organ", "trumpet_guitar_keyboard_organ"):
            # Each pad's pictures, at its middle pitch (of 48 and 55: 55), on mel axes.
            assert sorted(p.name for p in (test_library / pad / "thumbs").iterdir()) == \
                sorted(f"x{c:02d}_y{r:02d}.png" for c in range(3) for r in range(3))
            assert Image.open(urllib.request.urlopen(server.url + f"{pad}/space.png")).size[0] > 400
            urllib.request.urlopen(server.url + f"{pad}/thumbs/x01_y01.png").close()
        time.sleep(0.3)
        server.lines.clear()  # count the page's requests only
        driver.get(server.url)
        wait_for(driver, "return window.explorer.pad", "bass_guitar_keyboard_organ")
        # The four dials: NW offers both of its sounds; choosing one loads that pad.
        Select(driver.find_element(By.ID, "corner-NW")).select_by_visible_text("Trumpet")
        pad = "trumpet_guitar_keyboard_organ"
        wait_for(driver, "return window.explorer.pad", pad)
        first = driver.find_element(By.CSS_SELECTOR, "#pad .cell").value_of_css_property("background-image")
        assert f"/{pad}/thumbs/x00_y00.png" in first
        assert server.wavs() == []  # nothing is fetched before a note needs it
        driver.find_element(By.ID, "loop").click()  # held notes sound until released

        # 'a' is C3 (48), a generated pitch: played as is. 'f' is F3 (53): nearest is 55, 2 down.
        ActionChains(driver).key_down("a").perform()
        wait_for(driver, "return window.explorer.active().filter(v => v.playing).length", 1)
        ActionChains(driver).key_down("f").perform()
        wait_for(driver, "return window.explorer.active().filter(v => v.playing).length", 2)
        rate = driver.execute_script("return window.explorer.context.sampleRate")
        playing = {v["note"]: v for v in voices(driver)}
        assert playing[48]["path"] == f"{pad}/p48/x00_y00.wav" and playing[48]["playbackRate"] == 1
        assert playing[53]["path"] == f"{pad}/p55/x00_y00.wav"
        assert abs(playing[53]["playbackRate"] - 2 ** (-2 / 12)) < 1e-6
        assert playing[48]["buffer"] == playing[53]["buffer"] == round(0.1 * rate)
        assert playing[48]["loop"] and playing[53]["loop"]
        ActionChains(driver).key_up("a").perform()
        wait_for(driver, "return window.explorer.active().map(v => v.note).join()", "53")
        ActionChains(driver).key_down("x").key_up("x").key_up("f").key_down("z").key_up("z").perform()
        wait_for(driver, "return window.explorer.active().length", 0)  # F3 ends, an octave later

        # Only what the notes needed, then their neighbours at those pitches, each once.
        wait_for(driver, "return window.explorer.loading", 0)
        time.sleep(0.3)
        near = ["x00_y00", "x01_y00", "x00_y01", "x01_y01"]
        assert sorted(server.wavs()) == sorted(f"{pad}/p{p}/{c}.wav" for p in (48, 55) for c in near)

        # MIDI as a keyboard would send it: CC 1 = 127 (east column), CC 2 = 0 (south row), note
        # on G3 at velocity 64, note off.
        driver.execute_script("window.explorer.midi([0xB0, 1, 127]); window.explorer.midi([0xB0, 2, 0]);"
                              "window.explorer.midi([0x90, 55, 64]);")
        wait_for(driver, "return window.explorer.active().filter(v => v.playing).length", 1)
        voice = voices(driver)[0]
        assert voice["path"] == f"{pad}/p55/x02_y02.wav" and voice["playbackRate"] == 1
        assert driver.execute_script("return window.explorer.voices.get(55).velocity") == 64
        driver.execute_script("window.explorer.midi([0x80, 55, 0])")
        wait_for(driver, "return window.explorer.active().length", 0)
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(ARTIFACTS / "explorer-library.png"))
    finally:
        driver.quit()
        server.close()


@pytest.mark.browser
def test_library_page_from_file(test_library):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    driver = chromium()
    try:
        # Small enough to embed (the default bound, 8 MB): plays from disk, fetching nothing.
        assert main(["explore", str(test_library)]) == 0
        driver.get((test_library / "index.html").as_uri())
        assert driver.execute_script(SHARED_HEAD) == "CSS1Compat rgb(17, 17, 17)"
        assert not driver.find_element(By.ID, "serve-hint").is_displayed()
        driver.find_element(By.ID, "loop").click()
        ActionChains(driver).key_down("h").perform()
        wait_for(driver, "return window.explorer.active().filter(v => v.playing).length", 1)
        assert voices(driver)[0]["path"] == "bass_guitar_keyboard_organ/p55/x00_y00.wav"  # A3 -> G3
        assert driver.execute_script("return window.explorer.fetched.length") == 0
        # Above the bound: nothing embedded, and the page says how to serve it.
        assert main(["explore", str(test_library), "--embed-max-mb", "0"]) == 0
        assert (test_library / "explorer-data.js").stat().st_size < 4000
        driver.get((test_library / "index.html").as_uri())
        hint = driver.find_element(By.ID, "serve-hint")
        assert hint.is_displayed() and "soundspace serve" in hint.text
    finally:
        driver.quit()


# Records every AudioBufferSourceNode started, as {start, stop} on its context's clock (stop null
# until one is scheduled), in window.sources: what really sounds, whatever the page says.
SOURCES = """(() => {
  window.sources = [];
  const proto = AudioBufferSourceNode.prototype, start = proto.start, stop = proto.stop;
  const records = new WeakMap();
  proto.start = function (when = 0, ...rest) {
    const record = { start: when, stop: null };
    records.set(this, record);
    window.sources.push(record);
    return start.call(this, when, ...rest);
  };
  proto.stop = function (when = 0) {
    records.get(this).stop = when;
    return stop.call(this, when);
  };
})();"""


@pytest.mark.browser
def test_a_note_released_before_its_sound_arrives_sounds_as_the_tap_it_was(test_library):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    from .servers.late_sounds import LateSounds

    assert main(["explore", str(test_library), "--embed-max-mb", "0"]) == 0  # sounds over serve
    server = Served(test_library)
    late = LateSounds(server.url)
    driver = chromium()
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": SOURCES})
    pad = "bass_guitar_keyboard_organ"
    sources = "return window.sources"

    def before_its_sound(path, actions):
        """Plays `actions` while `path` is on its way: the page asks for it and nothing sounds."""
        wait_for(driver, "return window.explorer.loading", 0)
        late.arrive.clear()
        count = len(driver.execute_script(sources))
        actions.perform()
        deadline = time.monotonic() + 10
        while path not in late.asked and time.monotonic() < deadline:
            time.sleep(0.05)
        assert path in late.asked
        time.sleep(0.3)
        assert len(driver.execute_script(sources)) == count
        late.arrive.set()
        wait_for(driver, "return window.sources.length", count + 1)
        time.sleep(0.3)  # and no second sound follows
        assert len(driver.execute_script(sources)) == count + 1
        return driver.execute_script(sources)[-1]

    try:
        driver.get(late.url)
        wait_for(driver, "return window.explorer.pad", pad)
        driver.find_element(By.ID, "loop").click()  # a held note would loop until released

        # Two quick taps on C3 before its sound arrives: one short note once it has (its attack,
        # as long as it was held, a 0.15 s release), not two, not one that loops on.
        tap = before_its_sound(f"{pad}/p48/x00_y00.wav",
                               ActionChains(driver).key_down("a").key_up("a").key_down("a").key_up("a"))
        assert tap["stop"] is not None and 0.15 < tap["stop"] - tap["start"] < 0.5, tap
        assert voices(driver) == []

        # A3 (-> G3) pressed and still held when its sound arrives: it sounds until released.
        held = before_its_sound(f"{pad}/p55/x00_y00.wav", ActionChains(driver).key_down("h"))
        assert held["stop"] is None and [v["note"] for v in voices(driver)] == [57]
        time.sleep(0.3)
        assert driver.execute_script(sources)[-1]["stop"] is None
        ActionChains(driver).key_up("h").perform()
        wait_for(driver, "return window.sources[window.sources.length - 1].stop !== null", True)

        # Tapped, then pressed again and held, on a new cell: the press that is still down sounds,
        # once, until released.
        ActionChains(driver).key_down(Keys.ARROW_RIGHT).key_up(Keys.ARROW_RIGHT).key_down(
            Keys.ARROW_RIGHT).key_up(Keys.ARROW_RIGHT).perform()
        held = before_its_sound(f"{pad}/p55/x02_y00.wav",
                                ActionChains(driver).key_down("h").key_up("h").key_down("h"))
        assert held["stop"] is None and [v["note"] for v in voices(driver)] == [57]
        ActionChains(driver).key_up("h").perform()
        wait_for(driver, "return window.sources[window.sources.length - 1].stop !== null", True)
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
    finally:
        driver.quit()
        late.close()
        server.close()


@pytest.mark.browser
def test_choosing_an_instrument_gives_the_keyboard_back_to_the_notes(test_library):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    assert main(["explore", str(test_library)]) == 0  # sounds in the page
    driver = chromium()

    def plays_and_moves(pad):
        """F, T, E and H play notes on `pad` and the arrows move the cell; the selectors stay."""
        corners = "return [...document.querySelectorAll('select')].map(s => s.value).join()"
        chosen = driver.execute_script(corners)
        for key, note in zip("fteh", (53, 54, 51, 57), strict=True):
            ActionChains(driver).key_down(key).perform()
            wait_for(driver, "return window.explorer.active().filter(v => v.playing).length", 1)
            assert [(v["note"], v["path"].split("/")[0]) for v in voices(driver)] == [(note, pad)]
            ActionChains(driver).key_up(key).perform()
            wait_for(driver, "return window.explorer.active().length", 0)
        start = driver.execute_script("return [window.explorer.column, window.explorer.row]")
        ActionChains(driver).key_down(Keys.ARROW_RIGHT).key_up(Keys.ARROW_RIGHT).key_down(
            Keys.ARROW_DOWN).key_up(Keys.ARROW_DOWN).perform()
        assert driver.execute_script("return [window.explorer.column, window.explorer.row]") == \
            [min(start[0] + 1, 2), min(start[1] + 1, 2)]
        assert driver.execute_script(corners) == chosen

    try:
        driver.get((test_library / "index.html").as_uri())
        wait_for(driver, "return window.explorer.pad", "bass_guitar_keyboard_organ")
        # Chosen with the pointer, then with the keyboard (on the corner, up to the sound above).
        Select(driver.find_element(By.ID, "corner-NW")).select_by_visible_text("Trumpet")
        wait_for(driver, "return window.explorer.pad", "trumpet_guitar_keyboard_organ")
        plays_and_moves("trumpet_guitar_keyboard_organ")
        driver.find_element(By.ID, "corner-NW").send_keys(Keys.ARROW_UP)
        wait_for(driver, "return window.explorer.pad", "bass_guitar_keyboard_organ")
        plays_and_moves("bass_guitar_keyboard_organ")
    finally:
        driver.quit()


@pytest.mark.browser
def test_a_space_above_the_page_bound_is_fetched_over_serve(test_space, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    space = tmp_path / "space"
    shutil.copytree(test_space, space)
    assert main(["explore", str(space), "--no-pictures", "--embed-max-mb", "0.1"]) == 0
    payload = json.loads((space / "explorer-data.js").read_text()
                         .removeprefix("window.SOUNDSPACE = ").rstrip().rstrip(";"))
    assert payload["audio"] == {} and payload["soundBytes"] > 100_000  # 9 x 32 kB, not embedded
    driver = chromium()
    server = Served(space)
    try:
        driver.get((space / "index.html").as_uri())
        hint = driver.find_element(By.ID, "serve-hint")
        assert hint.is_displayed() and "soundspace serve" in hint.text
        driver.get(server.url)
        assert not driver.find_element(By.ID, "serve-hint").is_displayed()
        cells = driver.find_elements(By.CSS_SELECTOR, "#pad .cell")
        ActionChains(driver).move_to_element(cells[4]).perform()
        wait_for(driver, "return window.explorer.playing", "x01_y01")
        assert "x01_y01.wav" in server.wavs()
        assert driver.find_element(By.ID, "download").get_attribute("href") == server.url + "x01_y01.wav"
    finally:
        driver.quit()
        server.close()


def test_pictures_are_mel_spectrograms():
    import librosa
    import numpy as np

    from pipeline.explorer.pictures import mel_filters, spectrogram

    # Another implementation of the same filters: librosa's, HTK mel scale, unnormalised.
    reference = librosa.filters.mel(sr=16000, n_fft=512, n_mels=64, htk=True, norm=None)
    assert np.abs(mel_filters() - reference).max() < 1e-6
    tone = np.sin(2 * np.pi * 1000 * np.arange(16000) / 16000).astype(np.float32)
    picture = spectrogram(tone)
    centres = librosa.mel_frequencies(66, fmin=0, fmax=8000, htk=True)[1:-1]
    assert picture.shape[0] == 64
    assert picture[:, 50].argmax() == np.argmin(abs(centres - 1000))  # 1 kHz lands in its band
    assert -1 < picture[:, 50].max() < 1 and picture[:5, 50].max() < -60


def test_explore_of_a_cell_that_is_not_audio_is_one_line(local_test_space, tmp_path, capsys):
    """Issue 34, item 5: a cell replaced by other bytes, its manifest's sha256 changed to match,
    ended with the repr of a Python object in its line (or as an internal error before #29)."""
    import hashlib

    space = tmp_path / "space"
    shutil.copytree(local_test_space.space_dir, space)
    garbage = bytes(range(256)) * 4
    (space / "x01_y01.wav").write_bytes(garbage)
    manifest = json.loads((space / "manifest.json").read_text())
    for cell in manifest["cells"]:
        if cell["name"] == "x01_y01":
            cell["sha256"] = hashlib.sha256(garbage).hexdigest()
    (space / "manifest.json").write_text(json.dumps(manifest))
    assert main(["explore", str(space)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "0x" not in err and "internal error" not in err, err
    assert f"cannot read {space / 'x01_y01.wav'} as audio (" in err
    assert "run the same generate command again" in err


def page_script(driver, script, default=None):
    """A script's value, or `default` while the page is between two documents (a reload)."""
    from selenium.common.exceptions import JavascriptException, WebDriverException

    try:
        return driver.execute_script(script)
    except (JavascriptException, WebDriverException):
        return default


def wait_until(driver, script, timeout=60.0):
    """Wait until a script returns something true; its value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = page_script(driver, script)
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{script} stayed false for {timeout} s")


def decoding(run, partial: Path) -> None:
    """Wait until the run has planned and its decode kept a snapshot (a partial WAV)."""
    deadline = time.monotonic() + 120
    while not any(partial.glob("*.wav")):
        assert run.poll() is None and time.monotonic() < deadline, run.stderr.read()
        time.sleep(0.05)


def end_all(driver, server, run) -> None:
    """What a test over a run in progress started: the browser, the server and the run."""
    if driver is not None:
        driver.quit()
    if server is not None:
        server.close()
    if run.poll() is None:
        os.killpg(run.pid, 9)
        run.wait()


@pytest.mark.browser
def test_a_space_is_heard_while_it_is_made_then_plays_its_finished_cells(tmp_path):
    """Issue 30, item 5: over `soundspace serve` during a run, the page shows each cell
    finished, in progress (how far) or waiting; a pinned cell in progress plays its audio so far
    and plays again as it grows; when the run ends the page reloads and plays the finished WAVs."""
    import soundfile
    from selenium.webdriver.common.by import By

    from pipeline import snapshots

    from .test_snapshots import start

    data = dataset(tmp_path / "d", length=1.0)
    flow = workflow(tmp_path, math="numpy", snapshot_seconds=0.2, shard_size=3, decode_batch=3)
    space = tmp_path / "out" / "space"
    run = start(data, flow)
    server = driver = None
    try:
        decoding(run, space / snapshots.PARTIAL)
        server = Served(space)
        driver = chromium()
        driver.get(server.url)
        making = wait_until(driver, "const live = window.explorer.live; return live && Object.keys("
                                    "live.cells).find(k => live.cells[k].state === 'making')")
        assert "being made" in driver.find_element(By.ID, "live").text
        states = driver.execute_script(
            "return [...document.querySelectorAll('#pad .cell')].map(e => e.dataset.state)")
        assert len(states) == 9 and "waiting" in states, states  # 3 decode at a time
        cell = driver.find_element(By.CSS_SELECTOR, f'#pad .cell[data-name="{making}"]')
        bar = cell.find_element(By.CSS_SELECTOR, ".made").get_attribute("style")
        assert 0 < float(bar.split("width:")[1].split("%")[0]) < 100, bar
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(ARTIFACTS / "explorer-live.png"))

        cell.click()  # pinned: it plays what is made of it so far
        wait_for(driver, "return window.explorer.playing", making)
        heard = driver.execute_script("return window.explorer.heard")
        assert heard.startswith(f".soundspace/partial/{making}.wav?at="), heard
        made = float(heard.split("?at=")[1])
        rate = driver.execute_script("return window.explorer.context.sampleRate")
        played = driver.execute_script("return window.explorer.voice.source.buffer.length")
        # what was made when the page asked (the file may have grown since: never shorter)
        assert 0 < made < 1.0 and made * rate - 2 <= played < 1.0 * rate, (made, played)
        assert heard.split("?")[0] in server.wavs()[-1]
        # It grows: the pinned cell plays again, longer (or, finished, its WAV).
        wait_until(driver, f"return window.explorer.playing === {json.dumps(making)} && "
                           f"window.explorer.voice.source.buffer.length > {played}")

        assert run.wait(180) == 0, run.stderr.read()
        # The run said complete: the page reloads as the finished one and plays the WAVs.
        wait_until(driver, "return window.SOUNDSPACE && !window.SOUNDSPACE.live && "
                           "document.readyState === 'complete'")
        driver.find_element(By.CSS_SELECTOR, f'#pad .cell[data-name="{making}"]').click()
        wait_for(driver, "return window.explorer.playing", making)
        whole = len(soundfile.read(space / f"{making}.wav")[0])
        played = driver.execute_script("return window.explorer.voice.source.buffer.length")
        assert abs(played - whole * rate / 16000) <= 2, (played, whole)
        assert driver.execute_script("return document.querySelectorAll('#pad .cell.waiting')"
                                     ".length") == 0
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
    finally:
        end_all(driver, server, run)


@pytest.mark.browser
def test_a_library_is_played_while_it_is_made_then_from_its_pads(tmp_path):
    """Issue 30, item 5, for a library: the chosen pad's cells show their state over its
    pitches, a note on a cell in progress plays its decode's audio so far, a note on one not
    begun says it waits; when the run ends the page reloads and plays the pads' files."""
    from selenium.webdriver.common.by import By

    from pipeline import snapshots
    from pipeline.pads import DECODES

    from .test_library import small_library
    from .test_snapshots import start

    data = small_library(tmp_path / "d", length=0.5)
    flow = workflow(tmp_path, math="numpy", snapshot_seconds=0.2, shard_size=4, decode_batch=4)
    library = tmp_path / "out" / "lib"
    run = start(data, flow)
    server = driver = None
    try:
        decoding(run, library / DECODES / snapshots.PARTIAL)
        server = Served(library)
        driver = chromium()
        driver.get(server.url)
        pad = "bass_guitar_keyboard_organ"
        wait_for(driver, "return window.explorer.pad", pad)
        find = ("const live = window.explorer.live; return live && Object.keys(live.cells)"
                ".find(k => live.cells[k].state === '{}')")
        making = wait_until(driver, find.format("making"))  # e.g. p48/x01_y00, on this pad
        assert "being made" in driver.find_element(By.ID, "live").text
        pitch, cell = int(making[1:3]), making.split("/")[1]
        column, row = int(cell[1:3]), int(cell[5:7])
        element = driver.find_elements(By.CSS_SELECTOR, "#pad .cell")[row * 3 + column]
        assert element.get_attribute("data-state") == "making"
        element.click()
        driver.execute_script(f"window.explorer.noteOn({pitch})")
        wait_until(driver, "return window.explorer.active().some(v => v.playing)")
        voice = voices(driver)[0]
        assert voice["path"].startswith(f"{DECODES}/{snapshots.PARTIAL.as_posix()}/d0{pitch}-"), voice
        assert 0 < voice["buffer"] < 0.5 * driver.execute_script(
            "return window.explorer.context.sampleRate")  # less than its 0.5 s
        driver.execute_script(f"window.explorer.noteOff({pitch})")
        waiting = page_script(driver, find.format("waiting"))
        if waiting:  # a cell not begun (while any is left): a note says so, and plays nothing
            pitch, cell = int(waiting[1:3]), waiting.split("/")[1]
            driver.find_elements(By.CSS_SELECTOR, "#pad .cell")[
                int(cell[5:7]) * 3 + int(cell[1:3])].click()
            driver.execute_script(f"window.explorer.noteOn({pitch})")
            assert "waiting to be made" in driver.find_element(By.ID, "status").text
            driver.execute_script(f"window.explorer.noteOff({pitch})")

        assert run.wait(180) == 0, run.stderr.read()
        wait_until(driver, "return window.SOUNDSPACE_LIBRARY && !window.SOUNDSPACE_LIBRARY.live && "
                           "document.readyState === 'complete'")
        driver.find_elements(By.CSS_SELECTOR, "#pad .cell")[row * 3 + column].click()
        driver.execute_script(f"window.explorer.noteOn({int(making[1:3])})")
        wait_until(driver, "return window.explorer.active().some(v => v.playing)")
        assert voices(driver)[0]["path"] == f"{pad}/{making}.wav"
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
    finally:
        end_all(driver, server, run)


@pytest.mark.browser
def test_both_pages_play_the_input_sounds_beside_the_cells_and_download_the_cell(test_space,
                                                                               test_library):
    """Issue 31, item 8: a corner's input sound, as the encoder heard it (the dataset's file cut
    to the space's 1 s), plays from its corner's name on a space's page and from the button
    beside a library's corner selector (at the last note's pitch); the library's page offers
    the WAV of the cell under the cursor at that pitch."""
    import numpy as np
    import soundfile
    from selenium.webdriver.common.by import By

    from .pipeline_helpers import TEST_DATASET

    heard = soundfile.read(test_space / "inputs" / "NW.wav", dtype="int16")[0]
    source = soundfile.read(TEST_DATASET / "bass.wav", dtype="float64")[0][:16000]
    assert len(heard) == 16000 and np.abs(heard / 32768 - source).max() < 1.5 / 32768
    driver = chromium()
    try:
        driver.get((test_space / "index.html").as_uri())
        driver.find_element(By.CSS_SELECTOR, 'button.label[data-input="NW"]').click()
        wait_for(driver, "return window.explorer.playing", "input NW")
        rate = driver.execute_script("return window.explorer.context.sampleRate")
        played = driver.execute_script("return window.explorer.voice.source.buffer.length")
        assert played == round(16000 * rate / 16000)
        assert "Fingered bass" in driver.find_element(By.ID, "status").text

        assert main(["explore", str(test_library), "--embed-max-mb", "0"]) == 0  # over serve
        server = Served(test_library)
        try:
            driver.get(server.url)
            wait_for(driver, "return window.explorer.pad", "bass_guitar_keyboard_organ")
            link = driver.find_element(By.ID, "download")
            assert link.get_attribute("href") == server.url + \
                "bass_guitar_keyboard_organ/p55/x00_y00.wav"  # the middle pitch before any note
            driver.execute_script("window.explorer.noteOn(48); window.explorer.noteOff(48)")
            assert link.get_attribute("href").endswith("bass_guitar_keyboard_organ/p48/x00_y00.wav")
            driver.find_element(By.CSS_SELECTOR, 'button.input[data-corner="NW"]').click()
            wait_for(driver, "return window.explorer.heardInput", "inputs/bass_48.wav")
            wait_until(driver, "return window.explorer.inputVoice && "
                               "window.explorer.inputVoice.source.buffer.length > 0")
            assert "inputs/bass_48.wav" in server.wavs()
            assert (test_library / "inputs" / "bass_48.wav").is_file()
        finally:
            server.close()
    finally:
        driver.quit()
