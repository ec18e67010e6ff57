"""Description of the machine and software a benchmark ran on, stored at the top of every result file."""
import datetime
import os
import platform
from typing import Any, Dict

import e3nn
import numpy
import openmm
import torch

from .. import __version__
from ..hashing import file_sha256  # noqa: F401  (re-exported: benchmark records name their model file)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def describe_machine() -> Dict[str, Any]:
    """CPU, core count, torch threads, GPU (if any) and package versions."""
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "hostname": platform.node(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": gpu,
        "python": platform.python_version(),
        "equiforce": __version__,
        "torch": torch.__version__,
        "e3nn": e3nn.__version__,
        "openmm": openmm.__version__,
        "numpy": numpy.__version__,
    }
