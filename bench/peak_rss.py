"""Extra peak resident memory of a stretch of code, from the kernel's counters (Linux).

``reset_peak()`` resets the process's peak-RSS counter (``/proc/self/clear_refs``) and returns the
current RSS; ``extra_peak(before)`` is ``VmHWM - before`` since then. Run the process with
``MALLOC_MMAP_THRESHOLD_=131072`` so RSS follows live tensors rather than the heap's history.
"""

from __future__ import annotations


def _status(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(field)


def reset_peak() -> int:
    """Reset the peak-RSS counter; the current RSS in bytes."""
    with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
        fh.write("5")
    return _status("VmRSS")


def extra_peak(before: int) -> int:
    """Bytes the peak RSS rose above ``before`` since ``reset_peak``."""
    return _status("VmHWM") - before
