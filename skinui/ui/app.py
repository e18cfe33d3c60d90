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


# The queue, measured with bench/load.py (docs/BENCHMARKS.md, "Load and soak"). Two events at once, one
# torch thread each, fill the two cores without oversubscribing them: with torch's default (a thread per
# core) two events ran four threads on two cores and cost 10-20% more CPU per request under load, for no
# gain to a single user (a batch of one barely parallelises; most of a request is Python). Elsewhere each
# event gets its share of the cores. GRADIO_DEFAULT_CONCURRENCY_LIMIT and SKINUI_TORCH_THREADS override.
WORKERS = 2  # events run at once
QUEUE_MAX_SIZE = 64  # events waiting beyond this are refused at once with a sentence, never left hanging


_TORCH_DEFAULT: list[int] = []  # torch's own thread count, read before launch() first changes it


def torch_threads(workers: int) -> int:
    """Intra-op threads per event: SKINUI_TORCH_THREADS, else torch's default (one per core) shared among workers."""
    import torch

    _TORCH_DEFAULT[:] = _TORCH_DEFAULT or [torch.get_num_threads()]
    return int(os.environ.get("SKINUI_TORCH_THREADS") or max(1, _TORCH_DEFAULT[0] // workers))


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
    import torch

    workers = int(os.environ.get("GRADIO_DEFAULT_CONCURRENCY_LIMIT") or WORKERS)
    torch.set_num_threads(torch_threads(workers))
    print(f"SkinUI: {workers} events at once, {torch.get_num_threads()} torch thread(s) each, at most "
          f"{QUEUE_MAX_SIZE} waiting", flush=True)
    demo.queue(default_concurrency_limit=workers, max_size=QUEUE_MAX_SIZE)
    _busy_sentence(demo._queue, workers)
    demo.launch(server_name=host, server_port=port, show_error=False, **kw)
    return demo
