"""``runtime.cpu_int8``: which CPUs' ONNX Runtime integer kernels saturate on 8-bit weights, from /proc/cpuinfo text
as Linux writes it (the flag names are the kernel's)."""
from __future__ import annotations

import pytest

from runtime.cpu_int8 import cpu_flags, int8_weights_saturate

EPYC_ROME = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B12\nflags\t\t: fpu sse2 avx avx2 fma\n"
ICE_LAKE = "processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: avx2 avx512f avx512bw avx512_vnni\n"
ALDER_LAKE = "processor\t: 0\nflags\t\t: avx2 avx_vnni\n"
SKYLAKE_X = "processor\t: 0\nflags\t\t: avx2 avx512f avx512bw avx512vl\n"  # AVX-512 without VNNI
JETSON_ORIN = "processor\t: 0\nBogoMIPS\t: 62.50\nFeatures\t: fp asimd asimddp\nCPU implementer\t: 0x41\n"


@pytest.mark.parametrize("cpuinfo, saturates", [(EPYC_ROME, True), (SKYLAKE_X, True), (ICE_LAKE, False),
                                                (ALDER_LAKE, False), ("", True)],
                         ids=["avx2", "avx512-without-vnni", "avx512-vnni", "avx-vnni", "unreadable"])
def test_x86_saturates_unless_it_has_vnni(cpuinfo: str, saturates: bool) -> None:
    assert int8_weights_saturate("x86_64", cpuinfo) is saturates


def test_arm_never_saturates() -> None:
    assert int8_weights_saturate("aarch64", JETSON_ORIN) is False


def test_the_flags_are_the_first_x86_processors_whole_words() -> None:
    assert cpu_flags(ICE_LAKE + "processor\t: 1\nflags\t\t: sse2\n") == {"avx2", "avx512f", "avx512bw", "avx512_vnni"}
    assert "avx512_vnni" not in cpu_flags("flags\t: avx512_vnnix\n")
