"""SkinUI: `python app.py [--host H] [--port P] [--entry NAME]` (also the Hugging Face Space entry point).

A research and teaching tool for multimodal skin-lesion AI; see the About tab. GRADIO_* environment
variables work as usual (GRADIO_SERVER_NAME, GRADIO_SERVER_PORT, ...); SKINUI_WEIGHTS points at
another weights folder.
"""
from __future__ import annotations

import argparse
import atexit
import importlib
import os
import shutil
import signal
import tempfile
import threading

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported: nothing is sent out


def _import_in_background(*modules: str) -> threading.Thread:
    """Import torch and the zoo while gradio loads: the two imports overlap (about a third off start-up)."""
    thread = threading.Thread(target=lambda: [importlib.import_module(m) for m in modules], daemon=True)
    thread.start()
    return thread


def _private_upload_folder() -> None:
    """Uploads go to a folder of this process, removed when it exits, SIGTERM and Ctrl-C included:
    gradio's own clean-up does not run on a signal, and an upload no request read would stay."""
    if os.environ.get("GRADIO_TEMP_DIR"):  # the operator chose one: theirs to manage
        return
    folder = tempfile.mkdtemp(prefix="skinui-uploads-")
    os.environ["GRADIO_TEMP_DIR"] = folder
    atexit.register(shutil.rmtree, folder, ignore_errors=True)

    def stop(*_: object) -> None:
        # Exit at once, even mid start-up: a SystemExit raised while the page is served but the model
        # still loads can leave the interpreter waiting on gradio's threads. The folder goes first.
        shutil.rmtree(folder, ignore_errors=True)
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    print(f"SkinUI: uploads go to {folder}, removed when the app stops", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve the SkinUI app.")
    parser.add_argument("--host", default=None, help="address to bind (default: GRADIO_SERVER_NAME or 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="port (default: GRADIO_SERVER_PORT or 7860)")
    parser.add_argument("--entry", default=os.environ.get("SKINUI_ENTRY"), help="default zoo entry")
    parser.add_argument("--weights", default=None, help="weights folder (default: SKINUI_WEIGHTS or weights/)")
    args = parser.parse_args(argv)

    _private_upload_folder()
    _import_in_background("torch", "skinui.zoo")
    from skinui.ui.app import build_app, launch

    demo, ctx = build_app(args.weights, args.entry)
    installed = ", ".join(ctx.cache.names()) or "none (see the Case tab for how to get them)"
    print(f"SkinUI: entries installed in {ctx.cache.weights_dir}: {installed}", flush=True)
    launch(demo, args.host, args.port, prevent_thread_lock=True)
    # The page is already served; load the default model meanwhile so the first analysis is quick.
    print(f"SkinUI: {ctx.cache.preload(ctx.default)}", flush=True)
    demo.block_thread()


if __name__ == "__main__":
    main()
