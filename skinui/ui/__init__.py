"""The SkinUI gradio app: one module per tab, plus the entry cache, cards, inputs, uploads, form, figures and texts.

`build_app()` in `skinui.ui.app` assembles it; tab modules expose pure view functions
(session in, figures and numbers out) that the tests call directly.
"""
