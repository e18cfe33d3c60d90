"""Assemble the SkinUI Blocks app from its tabs; `app.py` at the repository root launches it."""
from __future__ import annotations

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


def launch(demo: gr.Blocks, host: str | None = None, port: int | None = None, **kw) -> gr.Blocks:
    """Queue (2 workers for 2 cores) and serve; host/port default to GRADIO_SERVER_NAME/PORT."""
    demo.queue(default_concurrency_limit=2)
    demo.launch(server_name=host, server_port=port, show_error=False, **kw)
    return demo
