"""The machine line every benchmark table carries: the CPU model, the threads, and the matrix-multiply
peak measured now by ../shared/tools/gemm_peak.py (machines change between sessions, so a table is
read against the peak it ran at).

    python bench/machine.py        # prints the line (the shell benchmarks start with it)
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def gemm_peak() -> dict[str, float]:
    path = ROOT.parent / "shared" / "tools" / "gemm_peak.py"
    spec = importlib.util.spec_from_file_location("gemm_peak", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {"fp32": module.peak(torch.float32), "bf16": module.peak(torch.bfloat16)}


def cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    for line in cpuinfo.read_text().splitlines() if cpuinfo.exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def machine(peak: dict[str, float] | None = None) -> str:
    peak = peak or gemm_peak()
    gpu = f"; GPU: {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return (f"CPU: {cpu_name()}, {torch.get_num_threads()} threads; matmul peak (gemm_peak.py) fp32 "
            f"{peak['fp32']:.0f}, bf16 {peak['bf16']:.0f} GFLOP/s{gpu}")


if __name__ == "__main__":
    print(machine())
