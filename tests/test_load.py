"""Many users at once, bounded for CI: bench/load.py's checks on two small demo entries, and a full queue.

The full figures (20 clients x 10 requests, browser pages, the queue settings, a 10-minute soak on
the shipped weights) come from `python bench/load.py` and are recorded in docs/BENCHMARKS.md.
"""
from __future__ import annotations

import importlib.util
import json
import socket
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from conftest import lesion_like
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def bench_load():
    """bench/load.py as a module (its dataclasses need it registered in sys.modules)."""
    name = "skinui_bench_load"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO / "bench" / "load.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="module")
def demo_weights(tmp_path_factory):
    from skinui.demo import make_demo_entry

    folder = tmp_path_factory.mktemp("weights")
    make_demo_entry(folder, "tri_jiadf", image_size=64)
    make_demo_entry(folder, "dm_late", image_size=64, structure="late", modalities=("dermoscopic", "metadata"))
    return folder


def demo_cases(load, folder: Path) -> list:
    """Four distinct cases: two trimodal ones for the default entry, two for dm_late (own photo, own age)."""
    cases = []
    for i in range(4):
        derm = folder / f"load-{i}-derm.png"
        clin = folder / f"load-{i}-clin.png"
        Image.fromarray(lesion_like(90, 80, seed=10 + i)).save(derm)
        Image.fromarray(lesion_like(64, 64, seed=20 + i)).save(clin)
        if i % 2 == 0:
            cases.append(load.LoadCase(f"trimodal {i}", "", str(derm), str(clin), json.dumps({"age": 30 + i})))
        else:
            cases.append(load.LoadCase(f"dm_late {i}", "dm_late", str(derm), None, json.dumps({"age": 40 + 7 * i})))
    return cases


@pytest.mark.slow
def test_concurrent_clients_get_their_own_answers_and_nothing_is_kept(demo_weights, tmp_path):
    load = bench_load()
    cases = demo_cases(load, tmp_path)
    with load.serve(demo_weights, log=tmp_path / "app.log") as server:
        alone = load.serial(server.url, cases, passes=1)
        assert alone["not_reproduced"] == 0 and alone["entries"] == ["dm_late", "tri_jiadf"]
        assert alone["min_case_distance"] > 100 * load.TOLERANCE  # a swapped answer would be seen
        together = load.concurrent(server.url, cases, requests=3)
        assert together["requests"] == 12
        assert together["errors"] == 0, together["error_examples"]
        assert together["cross_talk"] == 0
        # soak-like: 30 more requests from two clients; memory stays put, no upload stays behind
        warm = load.rss_mb(server.proc.pid)
        clients = [load.new_client(server.url) for _ in range(2)]
        failures = []

        def run(k: int) -> None:
            for i in range(15):
                case = cases[(k + 2 * i) % len(cases)]
                _, out, err = load.ask(clients[k], case)
                if err or not load.belongs(out, case.expected):
                    failures.append(err or f"{case.name}: {out}")

        threads = [threading.Thread(target=run, args=(k,)) for k in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert failures == []
        assert load.rss_mb(server.proc.pid) < warm * 1.25  # loose: 30 requests, allocator noise
        time.sleep(0.5)
        assert server.uploads is not None
        assert [p.name for p in load.files_under(server.uploads) if p.name.startswith("load-")] == []
        uploads = server.uploads
    assert not uploads.exists()  # the private upload folder went with the app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_full_queue_answers_at_once_with_a_sentence(demo_weights, monkeypatch):
    from gradio_client import Client
    from gradio_client.utils import QueueError

    import skinui.ui.app as app_module

    monkeypatch.delenv("GRADIO_DEFAULT_CONCURRENCY_LIMIT", raising=False)
    monkeypatch.delenv("SKINUI_TORCH_THREADS", raising=False)
    monkeypatch.setattr(app_module, "QUEUE_MAX_SIZE", 2)
    demo, ctx = app_module.build_app(demo_weights)
    port = free_port()
    app_module.launch(demo, "127.0.0.1", port, prevent_thread_lock=True, quiet=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        client = Client(url, verbose=False)
        fn_index = next(d["id"] for d in httpx.get(f"{url}config").json()["dependencies"] if d.get("api_name") == "predict")
        with ctx.cache.use("tri_jiadf"):  # the model is busy: the workers wait on it, the queue fills
            jobs = bench_load().fill_queue(demo, client, 2)
            assert len(jobs) == app_module.WORKERS + 2 and len(demo._queue) == 2
            start = time.perf_counter()
            refused = httpx.post(f"{url}gradio_api/queue/join", json={
                "data": ["", None, None, "{}"], "fn_index": fn_index, "session_hash": "loadtest01",
                "event_data": None, "trigger_id": None})
            assert refused.status_code == 503
            detail = refused.json()["detail"]
            assert detail.startswith("SkinUI is busy: 2 requests are waiting; try again in ") and detail.endswith(" s.")
            with pytest.raises(QueueError, match="try again"):
                client.predict("", None, None, '{"age": 51}', api_name="/predict")
            assert time.perf_counter() - start < 10  # refused at once, never left hanging
        answers = [job.result(timeout=60) for job in jobs]  # the queued ones are served once the model is free
        assert all(a["entry"] == "tri_jiadf" and "probabilities" in a for a in answers)
        assert "probabilities" in client.predict("", None, None, '{"age": 52}', api_name="/predict")
    finally:
        demo.close()
