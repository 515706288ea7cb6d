"""The machine line every benchmark table carries: the CPU model and its widest matrix instructions
(machines of one model name differ: an AMD EPYC here has been AVX-512 with bf16 and AVX2 without
it, which decides whether training runs in bf16), the threads, and the matrix-multiply peak
measured now by ../shared/tools/gemm_peak.py (machines change between sessions, so a table is
read against the peak it ran at).

    python bench/machine.py        # prints the line (the shell benchmarks start with it)
"""
from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def gemm_peak() -> dict[str, float]:
    """fp32 and bf16 peaks; bf16 only where the hardware runs it natively (NaN elsewhere: emulated bf16
    takes minutes to measure and no run uses it there)."""
    path = ROOT.parent / "shared" / "tools" / "gemm_peak.py"
    spec = importlib.util.spec_from_file_location("gemm_peak", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    from pipeline.training.trainer import native_bf16

    return {"fp32": module.peak(torch.float32), "bf16": module.peak(torch.bfloat16) if native_bf16() else float("nan")}


def cpuinfo(field: str) -> str | None:
    """The first value of ``field`` ("model name", "flags") in /proc/cpuinfo; None where there is none."""
    path = Path("/proc/cpuinfo")
    for line in path.read_text().splitlines() if path.exists() else []:
        if line.split(":", 1)[0].strip() == field:
            return line.split(":", 1)[1].strip()
    return None


def cpu_name() -> str:
    return cpuinfo("model name") or "unknown CPU"


def matrix_instructions() -> str:
    """The widest matrix instructions the CPU has, as /proc/cpuinfo flags them."""
    flags = set((cpuinfo("flags") or "").split())
    for flag, name in (("amx_bf16", "AMX"), ("avx512_bf16", "AVX-512 BF16"), ("avx512f", "AVX-512, no bf16"),
                       ("avx2", "AVX2, no bf16")):
        if flag in flags:
            return name
    return "no AVX2"


def machine(peak: dict[str, float] | None = None) -> str:
    peak = peak or gemm_peak()
    gpu = f"; GPU: {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return (f"CPU: {cpu_name()} ({matrix_instructions()}), {torch.get_num_threads()} threads; matmul peak (gemm_peak.py) fp32 "
            + (f"{peak['fp32']:.0f} GFLOP/s, bf16 not native" if math.isnan(peak["bf16"])
               else f"{peak['fp32']:.0f}, bf16 {peak['bf16']:.0f} GFLOP/s") + gpu)


if __name__ == "__main__":
    print(machine())
