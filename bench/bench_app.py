"""App speed on this machine: prediction and full explanation against bare backbone passes, start-up, memory.

    python bench/bench_app.py [--entry NAME] [--weights DIR] [--repeats 15] [--threads 2] [--no-start]

Uses the default zoo entry from SKINUI_WEIGHTS / weights/ (or --entry) when it takes two photos and
metadata; otherwise it builds an untrained trimodal JI-ADF/MMFA entry on EfficientNet-Lite0 at 224 px
(the same compute as a trained one).
The case is SynthDerm example 1 (two 224 px images and metadata). Baselines are measured in the
same run, interleaved with the measured work so machine load affects both alike; medians are
reported. Prints a JSON summary and the Markdown table for docs/BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def pick_entry(weights: Path, name: str | None) -> tuple[Path, str, str]:
    """(weights folder, entry name, where it came from)."""
    from skinui.ui.cards import pixel_modalities
    from skinui.ui.entries import EntryCache
    cache = EntryCache(weights)
    default = cache.default_name(name) if cache.cards else None
    if default and len(pixel_modalities(cache.card(default))) == 2:  # a trimodal entry fed by two photos
        return weights, default, "installed"
    from skinui.demo import make_demo_entry

    folder = Path(tempfile.mkdtemp(prefix="skinui-bench-"))
    make_demo_entry(folder, "bench_jiadf_mmfa")
    return folder, "bench_jiadf_mmfa", "untrained demo: no installed entry takes two photos + metadata"


def the_case():
    from skinui.cases import Case
    from skinui.examples import load_example

    ex = load_example(0)
    return Case("bench", dermoscopic=ex.images["dermoscopic"], clinical=ex.images["clinical"], metadata=ex.metadata)


def interleaved(fns: dict, repeats: int) -> dict[str, float]:
    """Median (and `_min`) seconds of each callable, run in turn `repeats` times after one warm-up each.

    The minimum is the least disturbed run on a shared machine; both ratios are reported."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    return {**{k: statistics.median(v) for k, v in times.items()}, **{f"{k}_min": min(v) for k, v in times.items()}}


def bench_model(weights: Path, name: str, repeats: int) -> dict[str, float]:
    import torch

    from skinui.explain import explain_case
    from skinui.ui.entries import EntryCache
    from skinui.zoo import load_entry

    with EntryCache(weights).use(name) as entry:  # as the app holds it (parameters frozen)
        case = the_case()
        mods = [m for m in ("dermoscopic", "clinical") if m in entry.modalities]
        batch = entry.batch([case])
        x = {m: batch[m] for m in mods}
        encoders = entry.model.image_encoders
        trained = load_entry(name, weights).model.train(False)  # a copy whose parameters take gradients

        def bare_forward():
            with torch.no_grad():
                for m in mods:
                    encoders[m](x[m])

        def bare_forward_backward():
            for m in mods:
                trained.image_encoders[m](x[m]).sum().backward()
            trained.zero_grad(set_to_none=True)

        fast = interleaved({"bare_forward": bare_forward, "predict": lambda: entry.predict([case])}, repeats)
        runs: list[dict[str, float]] = []

        def explain() -> None:  # encode (backbones once) + every explanation on that encoded case
            start = time.perf_counter()
            encoded = entry.encode(case)
            encode = time.perf_counter() - start
            runs.append({"encode": encode, **explain_case(encoded).seconds})

        slow = interleaved({"bare_forward_backward": bare_forward_backward, "explain": explain}, max(3, repeats // 2))
        parts = {f"explain_{k}": statistics.median(r[k] for r in runs) for k in runs[0]}
    return {**fast, **slow, "images": len(mods), **parts}


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def bench_start(weights: Path, name: str) -> dict[str, float]:
    """Seconds from `python app.py` to the Analyse button visible in Chromium; RSS once the entry is loaded.

    The browser is started before the app, so its own start-up is not counted.
    """
    import socket
    from contextlib import ExitStack

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "SKINUI_WEIGHTS": str(weights)}
    log = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)
    out: dict[str, float] = {}
    with ExitStack() as stack:
        page = None
        if Path("/usr/bin/chromium").is_file():
            from playwright.sync_api import sync_playwright

            p = stack.enter_context(sync_playwright())
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"])
            stack.callback(browser.close)
            page = browser.new_page()
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "app.py", "--port", str(port), "--entry", name], cwd=REPO,
                                env=env, stdout=log, stderr=subprocess.STDOUT)
        stack.callback(proc.wait, timeout=30)
        stack.callback(proc.terminate)
        url = f"http://127.0.0.1:{port}/"
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if proc.poll() is not None or time.perf_counter() - start > 180:
                raise RuntimeError(Path(log.name).read_text())
            time.sleep(0.05)
        out["start_to_http_s"] = time.perf_counter() - start
        if page is not None:
            page.goto(url)
            page.wait_for_selector("#analyse", state="visible", timeout=120_000)
            out["start_to_usable_page_s"] = time.perf_counter() - start
        while "loaded in" not in Path(log.name).read_text() and time.perf_counter() - start < 180:
            time.sleep(0.2)
        out["rss_default_entry_loaded_mb"] = rss_mb(proc.pid)
        from gradio_client import Client, handle_file

        tmp = Path(tempfile.mkdtemp())
        from PIL import Image

        case = the_case()
        for m in ("dermoscopic", "clinical"):
            Image.fromarray(getattr(case, m)).save(tmp / f"{m}.png")
        Client(url, verbose=False).predict("", handle_file(str(tmp / "dermoscopic.png")),
                                           handle_file(str(tmp / "clinical.png")), json.dumps(case.metadata),
                                           api_name="/predict")
        out["rss_after_a_prediction_mb"] = rss_mb(proc.pid)
    return out


def bench_loads(weights: Path) -> dict:
    """Seconds to verify and load each installed entry (what switching entries in the app costs).

    One warm-up load pays the one-time imports (timm, the model code) that app start-up already paid.
    """
    from skinui.zoo import list_entries, load_entry

    names = [c["name"] for c in list_entries(weights)]
    load_entry(names[0], weights)
    times = {}
    for name in names:
        start = time.perf_counter()
        load_entry(name, weights)
        times[name] = time.perf_counter() - start
    slowest = max(times, key=times.get)
    total_mb = sum(f.stat().st_size for f in weights.rglob("*") if f.is_file()) / 1e6
    return {"load_median_s": statistics.median(times.values()), "load_max_s": times[slowest],
            "load_slowest": slowest, "load_entries": len(names), "weights_mb": total_mb}


def markdown(r: dict) -> str:
    def versus(key: str, base: str, label: str) -> str:
        return (f"{r[key] / r[base]:.2f}x {label} ({r[base] * 1000:.0f} ms); fastest runs "
                f"{r[key + '_min'] * 1000:.0f} / {r[base + '_min'] * 1000:.0f} ms = {r[key + '_min'] / r[base + '_min']:.2f}x")

    rows = [
        ("Prediction, one trimodal case (`Entry.predict`: preprocessing + both backbones + head)",
         f"{r['predict'] * 1000:.0f} ms", versus("predict", "bare_forward", "bare forward"), "<= 1.3x"),
        ("Full explanation (`entry.encode` + `explain_case`: prediction + Grad-CAM on both images + IG + grouped "
         "feature ablation + 7-subset ablation)", f"{r['explain'] * 1000:.0f} ms",
         versus("explain", "bare_forward_backward", "bare forward+backward"), "<= 2x and < 1.5 s"),
    ]
    if "start_to_usable_page_s" in r:
        rows.append(("`python app.py` to the first usable page (Analyse button visible in Chromium)",
                     f"{r['start_to_usable_page_s']:.1f} s", f"HTTP up after {r['start_to_http_s']:.1f} s", "< 10 s"))
    if "rss_default_entry_loaded_mb" in r:
        rows.append(("Resident memory, default entry loaded", f"{r['rss_default_entry_loaded_mb']:.0f} MB",
                     f"{r['rss_after_a_prediction_mb']:.0f} MB after one prediction", "< 1.5 GB"))
    if "load_max_s" in r:
        rows.append((f"Loading an entry (verify SHA-256 + build + load; all {r['load_entries']} installed, "
                     f"{r['weights_mb']:.0f} MB in all)", f"{r['load_median_s']:.2f} s",
                     f"slowest {r['load_max_s']:.2f} s (`{r['load_slowest']}`)", "< 3 s each"))
    lines = ["| what | median | compared with | target |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    parts = ", ".join(f"{k[8:]} {v * 1000:.0f} ms" for k, v in r.items()
                      if k.startswith("explain_") and k not in ("explain_total", "explain_min"))
    lines.append(f"\nExplanation parts: {parts}.")
    return "\n".join(lines)


HEADING = "## App: prediction and explanation latency, start-up, memory"


def section(r: dict, command: str) -> str:
    import torch

    return f"""{HEADING}

Entry `{r['entry']}` ({r['source']}), one trimodal SynthDerm case (two 224 px images + metadata),
{r['threads']} torch thread(s) on {r['cpu']} with {r['cores']} cores (1-min load average
{r['load_average_1min']:.1f} when measured: this machine is shared, so read the ratios, which are taken
in the same run with the two sides interleaved), torch {torch.__version__}. *Bare forward* = the two
image encoders on the already preprocessed tensors, nothing else. *Bare forward+backward* = the same plus
`out.sum().backward()` through every parameter (what a training step computes). The explanation
reuses the prediction's encode pass: Grad-CAM re-runs only the explained image branch and its backward
stops at the target layer; relevance and the 7 subsets run `model.head` on cached features.
Start-up is dominated by importing gradio and torch (app.py overlaps the two and builds the page
before loading any model; the default entry is loaded after the page is served), so it scales with
the machine's load: read it together with the load average above.

Command: `{command}`

{markdown(r)}
"""


def write_section(path: Path, text: str) -> None:
    """Replace this benchmark's section in `path` (or append it), leaving other sections alone."""
    doc = path.read_text() if path.is_file() else "# Benchmarks\n"
    start = doc.find(HEADING)
    if start < 0:
        doc = doc.rstrip("\n") + "\n\n" + text
    else:
        end = doc.find("\n## ", start + len(HEADING))
        doc = doc[:start] + text + (doc[end + 1:] if end >= 0 else "")
    path.write_text(doc.rstrip("\n") + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entry", default=None)
    parser.add_argument("--weights", default=os.environ.get("SKINUI_WEIGHTS") or str(REPO / "weights"))
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (the app uses the default)")
    parser.add_argument("--no-start", action="store_true", help="skip the start-up and memory measurement")
    parser.add_argument("--write", type=Path, default=None, help="update this section of e.g. docs/BENCHMARKS.md")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    weights, name, source = pick_entry(Path(args.weights), args.entry)
    result = {"entry": name, "source": source, "threads": args.threads, "cpu": platform.processor() or platform.machine(),
              "cores": os.cpu_count(), "load_average_1min": os.getloadavg()[0]}
    result.update(bench_model(weights, name, args.repeats))
    result.update(bench_loads(weights))
    if not args.no_start:
        result.update(bench_start(weights, name))
    print(json.dumps(result, indent=2))
    print()
    print(markdown(result))
    if args.write:
        command = ".venv/bin/python bench/bench_app.py " + " ".join(sys.argv[1:])
        write_section(args.write, section(result, command))


if __name__ == "__main__":
    main()
