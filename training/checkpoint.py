"""Checkpoints without pickle: tensors in safetensors, everything else in JSON.

Optimizer, scheduler and grad-scaler states are nested dicts/lists mixing tensors and scalars.
`save_state` walks the structure, stores each tensor in one safetensors file under its path
(`optimizer/state/3/exp_avg`) and writes the rest as JSON with `{"__tensor__": path}` markers;
`load_state` reverses it. Integer dict keys (optimizer state ids) are tagged so they come back
as ints. The tensors go to a fresh `prefix.<token>.safetensors` and the JSON, written last by
an atomic rename, names that file: a run killed mid-write still has a complete older checkpoint.
"""
from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

_TENSOR, _INTKEYS, _TUPLE = "__tensor__", "__int_keys__", "__tuple__"


def _flatten(obj: Any, path: str, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        tensors[path] = obj.detach().cpu().clone()  # clone: safetensors refuses shared storage
        return {_TENSOR: path}
    if isinstance(obj, dict):
        int_keys = bool(obj) and all(isinstance(k, int) for k in obj)
        out = {str(k): _flatten(v, f"{path}/{k}", tensors) for k, v in obj.items()}
        return {_INTKEYS: out} if int_keys else out
    if isinstance(obj, tuple):
        return {_TUPLE: [_flatten(v, f"{path}/{i}", tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_flatten(v, f"{path}/{i}", tensors) for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot checkpoint a {type(obj).__name__} at {path}")


def _restore(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if _TENSOR in obj:
            return tensors[obj[_TENSOR]]
        if _INTKEYS in obj:
            return {int(k): _restore(v, tensors) for k, v in obj[_INTKEYS].items()}
        if _TUPLE in obj:
            return tuple(_restore(v, tensors) for v in obj[_TUPLE])
        return {k: _restore(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_restore(v, tensors) for v in obj]
    return obj


def _atomic(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def save_state(prefix: str | Path, state: dict[str, Any]) -> None:
    """Write `prefix.json` naming a new `prefix.<token>.safetensors`; older tensor files are removed after."""
    prefix = Path(prefix)
    tensors: dict[str, torch.Tensor] = {}
    tree = _flatten(state, "", tensors)
    tensor_file = f"{prefix.name}.{uuid.uuid4().hex[:12]}.safetensors"
    _atomic(prefix.parent / tensor_file, lambda p: save_file(tensors, str(p)))
    _atomic(prefix.with_suffix(".json"), lambda p: p.write_text(json.dumps({"tensors": tensor_file, "state": tree})))
    for old in prefix.parent.glob(f"{prefix.name}.*.safetensors"):
        if old.name != tensor_file:
            old.unlink(missing_ok=True)


def load_state(prefix: str | Path, device: str | torch.device = "cpu") -> dict[str, Any]:
    prefix = Path(prefix)
    doc = json.loads(prefix.with_suffix(".json").read_text())
    tensors = load_file(str(prefix.parent / doc["tensors"]), device=str(device))
    return _restore(doc["state"], tensors)


def exists(prefix: str | Path) -> bool:
    prefix = Path(prefix)
    if not prefix.with_suffix(".json").is_file():
        return False
    return (prefix.parent / json.loads(prefix.with_suffix(".json").read_text())["tensors"]).is_file()
