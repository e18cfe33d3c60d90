"""Where a run executes: device choice, mixed precision, seeding and torchrun's DDP environment.

`torchrun --nproc_per_node K -m training fit ...` sets RANK / WORLD_SIZE / LOCAL_RANK; we then
join the process group (NCCL on CUDA, gloo on CPU) and rank 0 alone logs and writes files.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import os
import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist


@dataclass
class Runtime:
    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    amp_dtype: torch.dtype | None = None  # autocast dtype on CUDA, None = full precision
    channels_last: bool = False

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        # only fp16 needs loss scaling; bf16 has fp32's exponent range
        return torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def describe(self) -> str:
        name = self.device.type
        if self.device.type == "cuda":
            name = f"cuda ({torch.cuda.get_device_name(self.device)})"
        amp = {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(self.amp_dtype, "fp32")
        return f"{name}, {amp}" + (f", DDP x{self.world_size}" if self.distributed else "")


def pick_device(requested: str = "auto", local_rank: int = 0) -> torch.device:
    """`auto` prefers CUDA, then Apple MPS, then CPU; an unavailable explicit choice is an error sentence."""
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank)
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if requested == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("--device cuda was asked for but no CUDA GPU is visible; use --device cpu or auto.")
        return torch.device("cuda", local_rank)
    if requested == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise RuntimeError("--device mps was asked for but Apple MPS is not available; use --device cpu or auto.")
        return torch.device("mps")
    if requested == "cpu":
        return torch.device("cpu")
    raise RuntimeError(f"--device must be auto, cpu, cuda or mps, not {requested!r}.")


def _amp_dtype(device: torch.device, amp: str) -> torch.dtype | None:
    if device.type != "cuda" or amp == "off":
        return None
    if amp == "fp16":
        return torch.float16
    if amp in ("bf16", "auto"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    raise RuntimeError(f"train.amp must be auto, bf16, fp16 or off, not {amp!r}.")


def setup(requested: str = "auto", amp: str = "auto", channels_last: bool = True) -> Runtime:
    """Build the runtime; joins the process group when launched by torchrun (WORLD_SIZE > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(requested, local)
    if world > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        # generous timeout: rank 0 may build a feature cache for a long time while the others wait
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo", timeout=dt.timedelta(hours=3))
    return Runtime(device, rank, world, local, _amp_dtype(device, amp), channels_last and device.type == "cuda")


def teardown(rt: Runtime) -> None:
    if rt.distributed and dist.is_initialized():
        dist.destroy_process_group()


def seed_everything(seed: int, *streams: int) -> None:
    """Seed python, numpy and torch from (seed, *streams), e.g. (seed, epoch, rank).

    Every epoch starts from its own derived seed, so a resumed run replays exactly the random
    stream (sampling order, augmentation, dropout) of a run that was never interrupted.
    """
    derived = int(np.random.SeedSequence([seed, *streams]).generate_state(1)[0])
    random.seed(derived)
    np.random.seed(derived)
    torch.manual_seed(derived)

