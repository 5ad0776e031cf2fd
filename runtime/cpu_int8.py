"""Whether ONNX Runtime's integer convolutions are exact on this CPU for 8-bit weights.

ONNX Runtime runs a Q/DQ graph's convolutions as uint8-activation x int8-weight integer GEMMs (U8S8). On x86
CPUs without VNNI (AVX2, AVX-512 without VNNI: many AMD EPYC and older Intel parts) those GEMMs multiply and add
byte pairs into int16 (``vpmaddubsw``), which saturates once 2 x 255 x |w| passes 32767, i.e. for weights above
64 in magnitude. 8-bit weights (up to 127, as TensorRT's symmetric scheme uses) then give wrong sums silently:
measured on an AVX2 EPYC, a PSPNet-ResNet-18 Q/DQ graph gave 10% of its labels as its own arithmetic (ONNX
Runtime's reference operators) means them, against 99% with the integer fusion off. VNNI (``vpdpbusd``)
accumulates in int32, and ARM's dot-product and widening kernels do not go through int16 (so ONNX Runtime's
kernels read; not measured here), so only x86 without VNNI is affected. ONNX Runtime's documented remedy for
those CPUs is 7-bit weights (``reduce_range``), which ``dannet-export int8 --target cpu`` uses.
"""
from __future__ import annotations

import platform
from pathlib import Path

#: the x86 flags (as /proc/cpuinfo spells them) under which ONNX Runtime's U8S8 kernels accumulate in int32
VNNI_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})


def cpu_flags(cpuinfo: str) -> set[str]:
    """The feature flags of the first processor in ``cpuinfo`` (the text of /proc/cpuinfo)."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return set(value.split())
    return set()


def int8_weights_saturate(machine: str | None = None, cpuinfo: str | None = None) -> bool:
    """True where ONNX Runtime's integer convolutions would saturate on 8-bit weights: an x86 CPU without VNNI.
    ``machine`` and ``cpuinfo`` default to this machine's (``platform.machine()``, /proc/cpuinfo); a CPU whose
    flags cannot be read (no /proc/cpuinfo: Windows, macOS) counts as saturating, the case that must not give wrong
    labels."""
    machine = machine or platform.machine()
    if machine.lower() not in ("x86_64", "amd64", "i386", "i686", "x86"):
        return False
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    return not (cpu_flags(cpuinfo) & VNNI_FLAGS)
