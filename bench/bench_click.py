"""Analyse as the user feels it: click to rendered tabs in Chromium, beside `explain_case` alone.

    python bench/bench_click.py [--weights weights] [--example 0] [--repeats 10] [--write docs/BENCHMARKS.md]
                                [--screenshots docs/screenshots]

Starts `python app.py` on the shipped zoo, loads real example case `--example` with one click
(its dataset's entry is chosen on validation), then clicks Analyse `--repeats` times and times each
click until the new status line is rendered (every tab's output arrives in that same event). In the same run,
in this process, `entry.encode` + `explain_case` on the same case gives the model's own share, so the
rest is the event chain, image encoding, plot serialisation and rendering. With `--screenshots` it
also saves the README's pictures of that real case (Prediction and Grad-CAM tabs).
"""
from __future__ import annotations

import argparse
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from anywhere
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def model_seconds(weights: Path, example: int, repeats: int, synthetic: bool) -> tuple[str, float]:
    """(entry, median seconds of encode + explain_case) for the example case, as the app holds the entry."""
    from skinui import evidence
    from skinui.cases import Case
    from skinui.examples import load_example, load_real_example
    from skinui.explain import explain_case
    from skinui.ui.entries import EntryCache

    ex = load_example(example) if synthetic else load_real_example(example)
    cache = EntryCache(weights)
    # the entry the app picks for this example: the default for SynthDerm, else its dataset's best on validation
    name = cache.default_name() if synthetic else evidence.best_on_validation(
        [c for c in cache.cards if c.get("dataset") == ex.dataset and not c.get("leaky")])
    case = Case("bench", **{m: v for m, v in ex.images.items()}, metadata=dict(ex.metadata))
    times = []
    with cache.use(name) as entry:
        for _ in range(repeats + 1):
            start = time.perf_counter()
            explain_case(entry.encode(case))
            times.append(time.perf_counter() - start)
    return name, statistics.median(times[1:])


def click_seconds(weights: Path, example: int, repeats: int, shots: Path | None, synthetic: bool) -> list[float]:
    from playwright.sync_api import expect, sync_playwright

    port = free_port()
    env = {**os.environ, "SKINUI_WEIGHTS": str(weights), "GRADIO_ANALYTICS_ENABLED": "False"}
    proc = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
            page = browser.new_page(viewport={"width": 1360, "height": 960})
            page.set_default_timeout(120_000)
            expect.set_options(timeout=120_000)
            deadline = time.time() + 120
            while time.time() < deadline:
                try:
                    page.goto(f"http://127.0.0.1:{port}/")
                    break
                except Exception:  # the server is not up yet
                    time.sleep(0.5)
            expect(page.locator("#analyse")).to_be_visible()
            page.click(f"#example-{example}" if synthetic else f"#real-example-{example}")
            expect(page.locator("#status")).to_contain_text("a synthetic" if synthetic else "a real")
            page.click("#analyse")  # warm-up: loads the entry
            expect(page.locator("#status")).to_contain_text("analysed in")
            times = []
            while len(times) < repeats:
                old = page.locator("#status").inner_text()
                page.evaluate("window.__t0 = performance.now()")
                page.click("#analyse")
                # rendered: a new status line (its own timing differs from the last); every view's
                # output arrives in the same event, so the other tabs are ready when they are opened
                try:
                    # gradio shows a progress overlay inside the component while the event runs: wait
                    # until it is gone and the text is new
                    page.wait_for_function("old => { const s = document.querySelector('#status');"
                                           " if (!s) return false;"
                                           " const busy = s.querySelector('[data-testid=status-tracker]:not(.hide)');"
                                           " return !busy && s.innerText !== old && s.innerText.includes('analysed in'); }",
                                           arg=old, timeout=20_000)
                except Exception:  # the same status text twice (same timing to the 10 ms): not measurable
                    continue
                times.append((page.evaluate("performance.now()") - page.evaluate("window.__t0")) / 1000)
            if shots is not None:
                shots.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(shots / "case.png"), full_page=True)
                page.get_by_role("tab", name="Prediction").click()
                page.wait_for_timeout(800)
                page.screenshot(path=str(shots / "prediction.png"), full_page=True)
                page.get_by_role("tab", name="Grad-CAM").click()
                page.wait_for_timeout(800)
                page.screenshot(path=str(shots / "gradcam.png"), full_page=True)
            browser.close()
        return times
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench/bench_click.py", description=__doc__.splitlines()[0])
    ap.add_argument("--weights", type=Path, default=REPO / "weights")
    ap.add_argument("--example", type=int, default=0, help="index of the real example case")
    ap.add_argument("--synthetic", action="store_true",
                    help="a SynthDerm example (two images + metadata) with the app's default entry instead")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--screenshots", type=Path, default=None)
    ap.add_argument("--write", type=Path, default=None, help="append/replace the section in docs/BENCHMARKS.md")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    name, model_s = model_seconds(args.weights, args.example, args.repeats, args.synthetic)
    clicks = click_seconds(args.weights, args.example, args.repeats, args.screenshots, args.synthetic)
    click_s = statistics.median(clicks)
    load = os.getloadavg()[0]
    case = (f"SynthDerm example {args.example} (two images + metadata)" if args.synthetic
            else f"real example case {args.example} (`skinui/examples/real`)")
    flag = " --synthetic" if args.synthetic else ""
    text = (f"### Analyse, click to rendered: {case}\n\nEntry `{name}`, Chromium headless, {args.repeats} clicks "
            f"after a warm-up, "
            f"{platform.machine()} with {os.cpu_count()} cores (1-min load average {load:.1f}), torch "
            f"{torch.__version__}.\n\nCommand: `.venv/bin/python bench/bench_click.py{flag} --example {args.example} "
            f"--write docs/BENCHMARKS.md`\n\n"
            f"| what | median | target |\n|---|---|---|\n"
            f"| Analyse click to the rendered result (status line; all tabs' outputs in the same event) | {click_s:.2f} s "
            f"(min {min(clicks):.2f}, max {max(clicks):.2f}) | <= 0.6 s |\n"
            f"| `entry.encode` + `explain_case` on the same case, in this process | {model_s:.3f} s | |\n"
            f"| the rest: event chain, image encoding, plot serialisation, rendering | {click_s - model_s:.2f} s | |\n")
    print(text)
    if args.write:
        doc = args.write.read_text()
        head = text.split("\n", 1)[0]
        if head in doc:
            pre, rest = doc.split(head, 1)
            nxt = min(i for i in (rest.find("\n## "), rest.find("\n### "), len(rest)) if i >= 0)
            doc = pre + text + rest[nxt + 1:] if nxt < len(rest) else pre + text
        else:
            doc = doc.rstrip("\n") + "\n\n" + text
        args.write.write_text(doc.rstrip("\n") + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
