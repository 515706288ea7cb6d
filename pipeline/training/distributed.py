"""Sharded training under ``accelerate launch``: what the pipeline adds to accelerate's FSDP so that
the presets in ``launch/`` run as shipped, on GPUs and on CPU processes over gloo."""
from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from pipeline.errors import PipelineError
from pipeline.models.architectures import beneath_adapter


def fsdp_requested() -> bool:
    """Whether ``accelerate launch`` was given an FSDP config (it passes it on in the environment)."""
    return os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"


def check_fsdp_launch(method: str) -> None:
    """Refuse, before anything loads, the FSDP settings the pipeline cannot honour."""
    if not fsdp_requested():
        return
    if os.environ.get("FSDP_CPU_RAM_EFFICIENT_LOADING", "false").lower() == "true":
        raise PipelineError("fsdp_cpu_ram_efficient_loading: true is not supported (the pipeline builds task heads "
                            "and adapters after loading, which the other processes would do on empty weights); "
                            "set it to false in the launch config, as launch/fsdp.yaml does")


def setup_fsdp(accelerator, model: torch.nn.Module, cpu: bool) -> bool:
    """Make accelerate's FSDP state fit this run; returns whether FSDP is on.

    - On CPU processes accelerate turns FSDP off by itself (it enables it for GPU process groups
      only) and would quietly run plain DDP; torch's ``fully_shard`` runs over gloo, so the state is
      switched to FSDP with the plugin the launch config describes.
    - The units to shard: the model's ``_no_split_modules`` minus those holding the input
      embeddings, which accelerate shards as a unit of their own (BERT and RoBERTa list their
      embedding block there, and sharding it twice fails).
    """
    state = accelerator.state
    plugin = getattr(state, "fsdp_plugin", None)
    if plugin is None and cpu and fsdp_requested():
        from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

        plugin = FullyShardedDataParallelPlugin()
        if state.mixed_precision != "no":
            plugin.set_mixed_precision(state.mixed_precision)
        state.distributed_type = DistributedType.FSDP
        state.fsdp_plugin = plugin
    if plugin is None:
        return False
    if plugin.transformer_cls_names_to_wrap is None:
        plugin.transformer_cls_names_to_wrap = shard_units(model)
    whole = kept_whole(model)
    if whole:
        plugin.ignored_modules = whole
        average_gradients_across_processes([p for m in whole for p in m.parameters() if p.requires_grad])
        compute_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(str(state.mixed_precision))
        if compute_dtype is not None and model.peft_config["default"].peft_type.value == "PREFIX_TUNING":
            model.get_base_model().register_forward_pre_hook(prefix_in_dtype(compute_dtype), with_kwargs=True)
    return True


def prefix_in_dtype(dtype: torch.dtype):
    """A pre-hook casting prefix tuning's keys and values to FSDP's compute dtype. peft casts them to
    the model's stored dtype (fp32 shards under FSDP) and hands them to the attention, while the
    sharded layers compute in the mixed-precision dtype; FSDP casts only what enters its units."""

    def cast(module: torch.nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        cache = kwargs.get("past_key_values")
        for layer in getattr(cache, "layers", None) or []:
            if getattr(layer, "keys", None) is not None:
                layer.keys, layer.values = layer.keys.to(dtype), layer.values.to(dtype)
        return args, kwargs

    return cast


def kept_whole(model: torch.nn.Module) -> list[torch.nn.Module]:
    """Modules whose parameters FSDP leaves unsharded, because peft reads them whole outside the
    sharded forward: the prompt encoder of prompt and prefix tuning (its embeddings are computed for
    every checkpoint) and AdaLoRA's adapter matrices and rank counts (its rank allocator ranks
    singular values across all of them). They are small; each process holds them all."""
    config = getattr(model, "peft_config", {}).get("default")
    if config is None:
        return []
    if config.is_prompt_learning:
        return [model.prompt_encoder]
    if type(config).__name__ == "AdaLoraConfig":
        return [module for name, module in model.named_modules()  # with the rank counts peft rewrites
                if name.rsplit(".", 1)[-1] in ("lora_A", "lora_B", "lora_E", "ranknum")]
    return []


ADALORA_RANK_PATTERN = "adalora_rank_pattern.json"


@contextmanager
def adalora_checkpoint_at_full_rank(model: torch.nn.Module, checkpoint: Path, *, saving: bool,
                                    write: bool = True) -> Iterator[None]:
    """Save or load a sharded AdaLoRA checkpoint with its matrices at full rank, the rank pattern beside.

    peft cuts AdaLoRA's matrices to the current rank pattern whenever it hands out or takes in the
    adapter's state, and the pattern changes as the budget shrinks: a checkpoint written at one
    pattern would not load into a model at another (the best checkpoint is older than the final
    pattern; a resumed run starts with none). The pruned ranks are zeros in lora_E, so the full
    matrices hold the same adapter; the pattern is written to the checkpoint (``write``: the main
    process) and, on loading, restored, so the adapter saved after it is cut as that checkpoint was."""
    config = getattr(model, "peft_config", {}).get("default")
    if type(config).__name__ != "AdaLoraConfig":
        yield
        return
    pattern, config.rank_pattern = config.rank_pattern, None
    try:
        yield
    finally:
        config.rank_pattern = pattern
    if saving and write:
        (checkpoint / ADALORA_RANK_PATTERN).write_text(json.dumps(pattern))
    elif not saving:
        saved = checkpoint / ADALORA_RANK_PATTERN
        config.rank_pattern = json.loads(saved.read_text()) if saved.exists() else None


def separate_whole_parameters(optimizer: torch.optim.Optimizer, model: torch.nn.Module) -> None:
    """Fused and foreach optimizers update a parameter group in one call, which cannot mix FSDP's
    sharded parameters with those it keeps whole: give the whole ones groups of their own (before
    the first step, while the optimizer holds no state)."""
    whole = {id(p) for module in kept_whole(model) for p in module.parameters()}
    if not whole:
        return
    groups = []
    for group in optimizer.param_groups:
        for kept in (False, True):
            params = [p for p in group["params"] if (id(p) in whole) == kept]
            if params:
                groups.append({**group, "params": params})
    optimizer.param_groups = groups


def average_gradients_across_processes(params: list[torch.nn.Parameter]) -> None:
    """FSDP neither shards nor reduces the gradients of the parameters it ignores: average them over
    the processes after each backward, as FSDP does for its own, so that every copy takes the same step."""
    import torch.distributed as dist

    def average(param: torch.nn.Parameter) -> None:
        dist.all_reduce(param.grad)  # a sum: gloo has no average
        param.grad.div_(dist.get_world_size())

    for param in params:
        param.register_post_accumulate_grad_hook(average)


def shard_units(model: torch.nn.Module) -> list[str]:
    """Class names of the blocks FSDP shards one by one (the transformer layers)."""
    base = beneath_adapter(model)  # a peft wrapper has no _no_split_modules
    names = set(getattr(base, "_no_split_modules", None) or [])
    embeddings = base.get_input_embeddings() if hasattr(base, "get_input_embeddings") else None
    holding_embeddings = {type(m).__name__ for m in base.modules()
                          if embeddings is not None and any(c is embeddings for c in m.modules())}
    return sorted(names - holding_embeddings)


def full_state_dict(trainer) -> dict[str, torch.Tensor] | None:
    """The whole weights to save where processes hold only shards of them (FSDP, DeepSpeed ZeRO-3),
    else None (the main process holds them whole). Every process must call it: the shards are gathered."""
    if trainer.is_fsdp_enabled:
        return gathered_state_dict(trainer.model)
    if trainer.is_deepspeed_enabled and trainer.accelerator.state.deepspeed_plugin.zero_stage == 3:
        return trainer.accelerator.get_state_dict(trainer.model_wrapped)  # needs zero3_save_16bit_model
    return None


def end_zero3_loading() -> None:
    """After a ZeRO-3 run transformers would still build every model partitioned across processes;
    the run's final scoring reloads it on the main process alone."""
    from transformers.integrations.deepspeed import (
        is_deepspeed_zero3_enabled,
        unset_hf_deepspeed_config,
    )

    if is_deepspeed_zero3_enabled():
        unset_hf_deepspeed_config()


def gathered_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The full weights of a sharded model, on the CPU. Every process must call it (each shard is
    all-gathered into a new tensor). torch's own full state dict is not used: on CPU processes it
    can point at the unsharded buffers FSDP frees when it reshards."""
    from torch.distributed.tensor import DTensor

    return {name: (value.full_tensor() if isinstance(value, DTensor) else value).detach().cpu()
            for name, value in model.state_dict().items()}


def leave_process_group() -> None:
    """End of a multi-process run: every process waits for the main one to finish the run folder,
    then leaves the process group. A process that exits with the group still open can abort
    ("terminate called without an active exception"), and the launcher then stops the others,
    the main one in the middle of writing the run."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
