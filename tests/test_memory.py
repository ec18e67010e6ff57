"""keep_freed_cpu_memory applies on glibc (Linux) and can be switched back; the effect on page faults and speed
is measured by benchmarks/memory_cpu.py, not here (it depends on the process's malloc history)."""
import sys

import pytest

from equiforce.memory import keep_freed_cpu_memory

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")


def test_the_setting_is_accepted_and_can_be_switched_back():
    try:
        assert keep_freed_cpu_memory(True) is True
    finally:
        assert keep_freed_cpu_memory(False) is True
