"""The machine's limits, said before a run: which device runs it, how much memory it has
free, and whether a run's estimated peak fits.

torch is imported only for a device other than the CPU, or when it is already imported:
the widgets show this line at napari start, where importing torch would cost seconds.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

GIB = 2**30
#: The share of the free memory a run may plan to take: the rest is for the viewer, the
#: other processes and the estimate's error.
USABLE = 0.9


@dataclass(frozen=True)
class Limits:
    """A run's device and memory, in the one line shown before it."""

    engine: str
    device: str  #: "CPU, 2 threads", "CUDA: NVIDIA H200, 139 GiB", "Apple MPS"
    estimate: int | None  #: the run's peak memory (bytes); None: not estimated
    available: int | None  #: free memory of the device (bytes); None: unknown

    @property
    def fits(self) -> bool:
        """Whether the estimate fits the free memory (unknown counts as fitting)."""
        if self.estimate is None or self.available is None:
            return True
        return self.estimate <= USABLE * self.available

    @property
    def line(self) -> str:
        """``backprop on CPU, 2 threads; about 1.2 GiB of 23 GiB available``."""
        text = f"{self.engine} on {self.device}"
        if self.estimate is not None:
            text += f"; about {size_text(self.estimate)}"
            if self.available is not None:
                text += f" of {size_text(self.available)} available"
        return text

    @property
    def refusal(self) -> str:
        """One sentence saying why a run that does not fit is not started."""
        return (f"This {self.engine} run would need about {size_text(self.estimate or 0)} but "
                f"only {size_text(self.available or 0)} is available on {self.device}; "
                "use a smaller image or lighter settings.")


def size_text(nbytes: float) -> str:
    """Bytes in the unit a person reads: ``850 MiB``, ``1.2 GiB``, ``23 GiB``."""
    if nbytes < GIB:
        return f"{max(1, round(nbytes / 2**20))} MiB"
    gib = nbytes / GIB
    return f"{gib:.1f} GiB" if gib < 10 else f"{gib:.0f} GiB"


def cpu_threads() -> int:
    """The threads PyTorch uses on the CPU: torch's own count when it is loaded, else the
    ``OMP_NUM_THREADS`` it will read, else the cores this process may run on."""
    torch = sys.modules.get("torch")
    if torch is not None:
        return int(torch.get_num_threads())
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on this platform
        return os.cpu_count() or 1


def _device_kind(device: str) -> str:
    """``cpu``, ``cuda[:N]`` or ``mps``; ``auto`` is resolved only where torch is loaded
    or cannot be needed (no GPU driver): torch is not imported for a CPU."""
    name = (device or "auto").strip().lower()
    if name == "cpu" or (name == "auto" and "torch" not in sys.modules
                         and not _gpu_possible()):
        return "cpu"
    from .device import resolve_device

    return str(resolve_device(name))  # an absent device: InputError, in plain words


def _gpu_possible() -> bool:
    """Whether a CUDA or MPS device may exist, without importing torch."""
    if sys.platform == "darwin":
        return os.uname().machine == "arm64"
    return Path("/proc/driver/nvidia/gpus").is_dir() and any(
        Path("/proc/driver/nvidia/gpus").iterdir())


def device_summary(device: str = "auto", threads: int | None = None) -> str:
    """``CPU, 2 threads``, ``CUDA: NVIDIA H200, 139 GiB`` or ``Apple MPS``."""
    kind = _device_kind(device)
    if kind.startswith("cuda"):
        import torch

        index = torch.device(kind).index or 0
        props = torch.cuda.get_device_properties(index)
        return f"CUDA: {props.name}, {size_text(props.total_memory)}"
    if kind == "mps":
        return "Apple MPS"
    count = threads if threads else cpu_threads()
    return f"CPU, {count} thread{'s' if count != 1 else ''}"


def available_bytes(device: str = "auto") -> int | None:
    """Free memory of the device a run uses (bytes): the GPU's for CUDA, else the host's
    (Apple MPS shares it). None where it cannot be read."""
    kind = _device_kind(device)
    if kind.startswith("cuda"):
        import torch

        free, _ = torch.cuda.mem_get_info(torch.device(kind))
        return int(free)
    return host_available_bytes()


def host_available_bytes() -> int | None:
    """Memory the system can give without swapping: psutil's ``available`` if installed,
    else ``MemAvailable`` of ``/proc/meminfo``, else the free pages."""
    try:
        import psutil
    except ImportError:
        pass
    else:
        return int(psutil.virtual_memory().available)
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, OSError, ValueError):
        return None


def limits(engine: str, device: str, estimate: int | None, threads: int | None = None
           ) -> Limits:
    """The device line and memory check of a run of ``engine`` on ``device``."""
    return Limits(engine, device_summary(device, threads), estimate, available_bytes(device))


def time_left(step: int, total: int, elapsed: float) -> str:
    """``about 40 s left`` (or minutes) from the rate so far; empty before there is one."""
    if step <= 0 or total <= step or elapsed <= 0:
        return ""
    seconds = elapsed * (total - step) / step
    if seconds < 90:
        return f"about {max(1, round(seconds))} s left"
    return f"about {round(seconds / 60)} min left"
