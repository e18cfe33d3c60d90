"""SkinUI training: `python -m training {fit,evaluate,export}` (see training/__main__.py and docs)."""
