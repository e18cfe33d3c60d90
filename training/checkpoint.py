"""Checkpoints without pickle: tensors in safetensors, everything else in JSON.

Optimizer, scheduler and grad-scaler states are nested dicts/lists mixing tensors and scalars.
`save_state` walks the structure, stores each tensor in one safetensors file under its path
(`optimizer/state/3/exp_avg`) and writes the rest as JSON with `{"__tensor__": path}` markers;
`load_state` reverses it. Integer dict keys (optimizer state ids) are tagged so they come back
as ints. The tensors go to a fresh `prefix.<token>.safetensors` and the JSON, written last by
an atomic rename, names that file: a run killed mid-write still has a complete older checkpoint.

Integrity: the JSON records the SHA-256 of the tensor file's bytes and of its own state tree, and
`load_state` verifies both before using a byte (hash and parse the same bytes, as the zoo does).
A truncated, bit-flipped or half-copied checkpoint raises `CheckpointError` with a sentence saying
what to do; it is never loaded. Checkpoints written before the hashes existed (no `*_sha256`
keys) still load.
"""
from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as _parse_safetensors
from safetensors.torch import save as _safetensors_bytes

_TENSOR, _INTKEYS, _TUPLE = "__tensor__", "__int_keys__", "__tuple__"


class CheckpointError(ValueError):
    """A checkpoint that is missing a part, truncated or modified; `str(err)` says what to do."""


def _flatten(obj: Any, path: str, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        tensors[path] = obj.detach().cpu().clone(memory_format=torch.contiguous_format)  # clone: safetensors refuses shared storage
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


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _tree_sha256(tree: Any) -> str:
    return _sha256(json.dumps(tree, sort_keys=True).encode())


def write_atomic(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` through a temp file, fsync and rename: a kill leaves the old file or the new one."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor]) -> None:
    """A plain safetensors file (e.g. `best.safetensors`), written atomically: a kill mid-write
    leaves the previous file whole, never a truncated one."""
    write_atomic(path, _safetensors_bytes({k: v.detach().cpu().clone(memory_format=torch.contiguous_format) for k, v in tensors.items()}))


def save_state(prefix: str | Path, state: dict[str, Any]) -> None:
    """Write `prefix.json` naming a new `prefix.<token>.safetensors`; older tensor files are removed after."""
    prefix = Path(prefix)
    tensors: dict[str, torch.Tensor] = {}
    tree = _flatten(state, "", tensors)
    data = _safetensors_bytes(tensors)
    tensor_file = f"{prefix.name}.{uuid.uuid4().hex[:12]}.safetensors"
    write_atomic(prefix.parent / tensor_file, data)
    doc = {"tensors": tensor_file, "tensors_sha256": _sha256(data), "state_sha256": _tree_sha256(tree), "state": tree}
    write_atomic(prefix.with_suffix(".json"), json.dumps(doc).encode())
    for old in [*prefix.parent.glob(f"{prefix.name}.*.safetensors"), *prefix.parent.glob(f"{prefix.name}.*.tmp")]:
        if old.name != tensor_file:
            old.unlink(missing_ok=True)  # older tensor files, and temp files a killed run left behind


def load_state(prefix: str | Path, device: str | torch.device = "cpu") -> dict[str, Any]:
    """The state `save_state` wrote, after verifying both hashes; raises `CheckpointError` otherwise."""
    prefix = Path(prefix)
    where = prefix.with_suffix(".json")
    advice = (f"Delete {prefix.name}.json and {prefix.name}.*.safetensors in {prefix.parent} (or restore them from a "
              f"backup) and run again without --resume to start over.")
    try:
        doc = json.loads(where.read_bytes())
        tree, tensor_file = doc["state"], doc["tensors"]
        if not isinstance(tensor_file, str) or Path(tensor_file).name != tensor_file:
            raise ValueError("bad tensor file name")
    except FileNotFoundError:
        raise CheckpointError(f"There is no checkpoint {where}; run without --resume to start.") from None
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
        raise CheckpointError(f"The checkpoint {where} is truncated or corrupted, so it was not loaded. {advice}") from None
    if "state_sha256" in doc and _tree_sha256(tree) != doc["state_sha256"]:
        raise CheckpointError(f"The checkpoint {where} was modified or corrupted (its state does not match its "
                              f"SHA-256), so it was not loaded. {advice}")
    path = prefix.parent / tensor_file
    try:
        data = path.read_bytes()  # hash and parse the same bytes
    except OSError:
        raise CheckpointError(f"The checkpoint {where} names {tensor_file}, which is missing, so it was not loaded. "
                              f"{advice}") from None
    if "tensors_sha256" in doc and _sha256(data) != doc["tensors_sha256"]:
        raise CheckpointError(f"The checkpoint tensor file {path} is truncated or corrupted (its SHA-256 does not "
                              f"match {where.name}), so it was not loaded. {advice}")
    try:
        tensors = _parse_safetensors(data)
    except (SafetensorError, ValueError, OSError):
        raise CheckpointError(f"The checkpoint tensor file {path} is not a readable safetensors file, so it was not "
                              f"loaded. {advice}") from None
    try:
        state = _restore(tree, tensors)
    except (KeyError, TypeError, AttributeError):
        raise CheckpointError(f"The checkpoint {where} does not match its tensor file, so it was not loaded. "
                              f"{advice}") from None
    return _to(state, torch.device(device))


def _to(obj: Any, device: torch.device) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj if device.type == "cpu" else obj.to(device)
    if isinstance(obj, dict):
        return {k: _to(v, device) for k, v in obj.items()}
    if isinstance(obj, tuple):
        return tuple(_to(v, device) for v in obj)
    if isinstance(obj, list):
        return [_to(v, device) for v in obj]
    return obj


def exists(prefix: str | Path) -> bool:
    """Whether a checkpoint was written at `prefix` (complete or not: `load_state` verifies it)."""
    return Path(prefix).with_suffix(".json").is_file()
