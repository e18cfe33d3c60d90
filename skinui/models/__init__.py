"""Encoders, fusion methods and structures, built by name through `build_model(cfg)`."""
from skinui.models.encoders import IMAGE_ENCODERS, META_ENCODERS
from skinui.models.fusion import FUSIONS, FusionBase
from skinui.models.model import MultimodalModel, build_model, resolve_config
from skinui.models.structures import STRUCTURES, ModelOutput

__all__ = ["FUSIONS", "IMAGE_ENCODERS", "META_ENCODERS", "STRUCTURES", "FusionBase", "ModelOutput",
           "MultimodalModel", "build_model", "resolve_config"]
