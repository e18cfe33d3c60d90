"""Assemble the SkinUI Blocks app from its tabs; `app.py` at the repository root launches it."""
from __future__ import annotations

import math
import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported: nothing is sent out

import gradio as gr  # noqa: E402

from skinui.ui import (  # noqa: E402
    ablation_tab,
    about_tab,
    api,
    calibration_tab,
    case_tab,
    compare_tab,
    gradcam_tab,
    prediction_tab,
    relevance_tab,
)
from skinui.ui.entries import AppError, EntryCache  # noqa: E402
from skinui.ui.form import MetadataForm  # noqa: E402
from skinui.ui.session import AppContext, Session  # noqa: E402

TITLE = "SkinUI — multimodal skin-lesion AI, explained"
# Every 5 minutes gradio deletes its cached files older than 15 minutes (uploads are deleted as
# soon as they are read; this sweeps the rendered pictures).
DELETE_CACHE = (300, 900)


def build_app(weights_dir: str | os.PathLike | None = None, default_entry: str | None = None,
              cache: EntryCache | None = None) -> tuple[gr.Blocks, AppContext]:
    """The Blocks app and its context; an unknown `default_entry` falls back with a notice."""
    cache = cache or EntryCache(weights_dir)
    notice = ""
    try:
        default = cache.default_name(default_entry)
    except AppError as err:
        default, notice = cache.default_name(), f"⚠️ {err} Using {cache.default_name() or 'no entry'} instead."
    ctx = AppContext(cache, default, MetadataForm(cache.cards))
    with gr.Blocks(title="SkinUI", analytics_enabled=False, delete_cache=DELETE_CACHE) as demo:
        gr.Markdown(f"# {TITLE}\nEnter a case, pick a model, press **Analyse**, then read the tabs."
                    + (f"\n\n{notice}" if notice else ""))
        session_state = gr.State(Session())
        with gr.Tabs():
            case_tab.build(ctx)
            prediction_tab.build(ctx)
            gradcam_tab.build(ctx, session_state)
            relevance_tab.build(ctx, session_state)
            ablation_tab.build(ctx, session_state)
            calibration_tab.build(ctx)
            compare_tab.build(ctx, session_state)
            about_tab.build(ctx)
        case_tab.wire(ctx, session_state)
        api.build(ctx)
    return demo, ctx


# The queue (measured by bench/load.py, docs/BENCHMARKS.md "Load and soak"). GRADIO_DEFAULT_CONCURRENCY_LIMIT
# and SKINUI_TORCH_THREADS override the first two.
WORKERS = 2  # events run at once
TORCH_THREADS: int | None = None  # torch intra-op threads; None leaves torch's default (one per core)
QUEUE_MAX_SIZE = 64  # events waiting beyond this are refused at once with a sentence, never left hanging


def _busy_sentence(queue: object, workers: int) -> None:
    """When the queue is full gradio answers HTTP 503 at once (gradio_client raises QueueError "Queue is
    full! Please try again.", the page shows "This application is currently busy"); the HTTP answer
    here also says how long to wait, from the slowest event's mean time."""
    push = getattr(queue, "push", None)
    if push is None:
        return

    async def push_or_busy(*args, **kwargs):  # noqa: ANN202 (gradio's own signature)
        result = await push(*args, **kwargs)
        if isinstance(result, tuple) and len(result) == 3 and result[2] == "queue_full":
            times = [t.avg_time for t in getattr(queue, "process_time_per_fn", {}).values() if t.count]
            wait = max(1, math.ceil(len(queue) * max(times, default=1.0) / workers))
            result = (result[0], f"SkinUI is busy: {len(queue)} requests are waiting; try again in {wait} s.",
                      result[2])
        return result

    queue.push = push_or_busy  # type: ignore[attr-defined]


def launch(demo: gr.Blocks, host: str | None = None, port: int | None = None, **kw) -> gr.Blocks:
    """Queue (WORKERS at once, at most QUEUE_MAX_SIZE waiting) and serve; host/port default to
    GRADIO_SERVER_NAME/PORT."""
    workers = int(os.environ.get("GRADIO_DEFAULT_CONCURRENCY_LIMIT") or WORKERS)
    threads = os.environ.get("SKINUI_TORCH_THREADS") or TORCH_THREADS
    if threads:
        import torch

        torch.set_num_threads(int(threads))
    demo.queue(default_concurrency_limit=workers, max_size=QUEUE_MAX_SIZE)
    _busy_sentence(demo._queue, workers)
    demo.launch(server_name=host, server_port=port, show_error=False, **kw)
    return demo
