"""End to end in Debian's headless Chromium (Playwright), against `python app.py` on localhost.

Uploads both images, fills metadata, predicts, opens every tab, switches the entry, toggles a
modality, sends a broken file, and checks that the page never asks anything of the internet.
With SKINUI_SCREENSHOTS=1 it saves the README's screenshots to docs/screenshots/.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
SHOTS = REPO / "docs" / "screenshots"

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if not CHROMIUM.is_file():
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium)")
    pytest.importorskip("playwright", reason="playwright is not installed (pip install playwright==1.65.2)")
    from skinui.demo import make_demo_entry

    weights = os.environ.get("SKINUI_TEST_WEIGHTS")  # e.g. weights/ for screenshots of real entries
    if not weights:
        weights = tmp_path_factory.mktemp("weights")
        make_demo_entry(weights, "demo_jiadf", image_size=96)
        make_demo_entry(weights, "demo_jf_concat", image_size=96, structure="jf", fusion="concat", seed=1)
        make_demo_entry(weights, "demo_ham", image_size=96, dataset="ham10000", structure="late",
                        modalities=("dermoscopic", "metadata"), seed=2)
    from conftest import running_app

    with running_app(Path(weights), tmp_path_factory.mktemp("log") / "app.log") as (_, url):
        yield url


@pytest.fixture(scope="module")
def case_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("case")
    try:
        from skinui.examples import EXAMPLES, load_example

        images = load_example(0).images if EXAMPLES else None
    except ImportError:
        images = None
    rng = np.random.default_rng(0)
    for m in ("dermoscopic", "clinical"):
        pixels = images[m] if images else rng.integers(0, 255, (200, 200, 3), dtype=np.uint8)
        Image.fromarray(np.asarray(pixels)).save(folder / f"{m}.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff this is no photograph")
    return folder


def shot(page, name: str) -> None:
    if os.environ.get("SKINUI_SCREENSHOTS") == "1":
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def open_tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()
    page.wait_for_timeout(400)


def text(page, selector: str) -> str:
    return page.locator(selector).inner_text()


def test_user_journey(server, case_files):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"])
        page = browser.new_page(viewport={"width": 1360, "height": 960})
        outside = []
        page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(
            (server, "data:", "blob:", "http://127.0.0.1", "http://localhost")) else None)
        page.set_default_timeout(60_000)
        expect.set_options(timeout=60_000)  # the first analysis loads the model on 2 shared cores
        page.goto(server)
        expect(page.locator("#analyse")).to_be_visible()

        # Case: both images, metadata, Analyse
        for m, label in (("dermoscopic", "Dermoscopic image"), ("clinical", "Clinical close-up")):
            page.locator(f"#input-{m} input[type=file]").set_input_files(str(case_files / f"{m}.png"))
            # wait for *this* upload's handler: the status of the previous one also says "loaded"
            expect(page.locator("#status")).to_contain_text(f"{label} loaded")
        page.locator("[id^=field-][id$=-age]").get_by_role("textbox").fill("67")
        page.locator("[id^=field-][id$=-diameter_mm]").get_by_role("textbox").fill("250")
        shot(page, "case")
        page.click("#analyse")
        expect(page.locator("#status")).to_contain_text("analysed in")
        status = text(page, "#status")
        entry = re.search(r"\(([\w.-]+)\); analysed", status).group(1)
        assert "outside the valid range" in status  # the 250 mm diameter was refused with a sentence

        open_tab(page, "Prediction")
        expect(page.locator("#prediction-headline")).to_contain_text("calibrated")
        # the trust paragraph: the differential with its guarantee, and the flipped-views second opinion
        expect(page.locator("#prediction-headline")).to_contain_text("90% prediction set")
        expect(page.locator("#prediction-headline")).to_contain_text("Second opinion: when the image is mirrored")
        # the notice sits once next to the prediction (and on the About tab), never as a banner everywhere
        expect(page.locator("#prediction-headline")).to_contain_text("not a medical device")
        expect(page.locator("#prediction-probs .js-plotly-plot")).to_be_visible()
        shot(page, "prediction")
        with page.expect_download() as download:  # the case report: one self-contained HTML file
            page.click("#download-report")
        report = Path(download.value.path()).read_text(encoding="utf-8")
        assert "SkinUI case report" in report and "not a medical device" in report and "<script" not in report

        open_tab(page, "Grad-CAM")
        for m in ("dermoscopic", "clinical"):
            expect(page.locator(f"#cam-{m} img")).to_be_visible()
        expect(page.locator("#cam-caption")).to_contain_text("where the model looked")
        expect(page.locator("#cam-caption")).to_contain_text("find the lesion")  # measured, or why it is not
        shot(page, "gradcam")

        open_tab(page, "Feature relevance")
        expect(page.locator("#rel-integrated_gradients .js-plotly-plot")).to_be_visible()
        expect(page.locator("#rel-feature_ablation .js-plotly-plot")).to_be_visible()
        # what if: the age changed on the same tab answers at once, the case as analysed kept beside it
        expect(page.locator("#whatif-text")).to_contain_text("Age is 67")
        age = page.locator("#whatif-slider input[type=number]")
        age.fill("85")
        age.blur()  # the slider's release event
        expect(page.locator("#whatif-text")).to_contain_text("Age 67 → 85")
        expect(page.locator("#whatif-plot .js-plotly-plot .legend .traces")).to_have_count(2)
        shot(page, "relevance")

        open_tab(page, "Modality ablation")
        expect(page.locator("#ablation-table [role=grid]")).to_have_attribute("aria-rowcount", "8")  # header + 7
        page.locator("#toggle-clinical input").uncheck()
        expect(page.locator("#ablation-text")).to_contain_text("D+M")
        shot(page, "ablation")

        open_tab(page, "Calibration")
        expect(page.locator("#calibration-text")).to_contain_text("Temperature")
        expect(page.locator("#calibration-plot .js-plotly-plot")).to_be_visible()
        shot(page, "calibration")

        open_tab(page, "Compare methods")
        page.click("#compare-run")
        expect(page.locator("#compare-text")).to_contain_text("entries predict")
        assert int(page.locator("#compare-table [role=grid]").get_attribute("aria-rowcount")) >= 3
        # rank the dataset's entries by explanation quality: unmeasured ones say so
        page.locator("#compare-rank-key").get_by_label("Grad-CAM on the lesion").check()
        expect(page.locator("#compare-rank-text")).to_contain_text("Ranked by the share of the map's weight")
        expect(page.locator("#compare-rank")).to_contain_text("not measured")
        shot(page, "compare")

        open_tab(page, "About")
        expect(page.locator("#about-statement")).to_contain_text("not a medical device")
        assert page.locator("#about-statement").get_by_text("not a medical device").count() == 1

        # switch to an entry of another dataset: the age typed above carries over, the analysis re-runs
        open_tab(page, "Case")
        page.locator("#entry-picker input").click()
        page.get_by_role("option").filter(has_text="ham10000 ·").first.click()
        expect(page.locator("#status")).not_to_contain_text(f"({entry})")
        expect(page.locator("#status")).to_contain_text("analysed in")
        expect(page.locator("#field-ham10000-age").get_by_role("textbox")).to_have_value("67")

        # a broken file gets a sentence and the server keeps serving
        page.locator("#input-dermoscopic input[type=file]").set_input_files(str(case_files / "broken.jpg"))
        expect(page.locator("#status")).to_contain_text("not a readable image")
        page.click("#analyse")
        expect(page.locator("#status")).to_contain_text("analysed in")

        # a phone-width screen: the probability bars still have room (short class codes on the axis)
        page.set_viewport_size({"width": 420, "height": 900})
        open_tab(page, "Prediction")
        expect(page.locator("#prediction-probs .js-plotly-plot .bars path").first).to_be_visible()
        axis = page.evaluate("document.querySelector('#prediction-probs .js-plotly-plot')._fullLayout.xaxis._length")
        assert axis > 240, axis  # the bars' axis keeps most of the panel; labels do not eat it
        shot(page, "phone")
        open_tab(page, "Case")
        label = page.locator("#examples-label").bounding_box()
        assert label and label["width"] > 300, label  # the examples' label spans the screen, not one letter
        open_tab(page, "Prediction")

        # reset: a blank case, typed values gone, results cleared
        open_tab(page, "Case")
        page.click("#reset")
        expect(page.locator("#status")).to_contain_text("Case cleared")
        expect(page.locator("#field-ham10000-age").get_by_role("textbox")).to_have_value("")
        open_tab(page, "Prediction")
        expect(page.locator("#prediction-headline")).to_contain_text("Analyse a case")

        # one click loads a real development-set case with its attribution, then Analyse runs on it
        open_tab(page, "Case")
        page.click("#real-example-0")
        expect(page.locator("#status")).to_contain_text("a real ham10000 case")
        expect(page.locator("#status")).to_contain_text("CC BY-NC-SA 4.0")
        page.click("#analyse")
        expect(page.locator("#status")).to_contain_text("analysed in")

        assert outside == []  # nothing was fetched from outside this machine
        browser.close()
