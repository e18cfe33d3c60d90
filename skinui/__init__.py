"""SkinUI: a research and teaching tool for multimodal skin-lesion AI (not a medical device)."""

__version__ = "0.1.0"
