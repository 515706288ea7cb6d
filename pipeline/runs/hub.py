"""Pushing a run to the Hugging Face Hub: the adapter (default) or the merged model, the tokenizer,
the label map, metrics, plots and a model card written for the Hub.

The token comes from huggingface_hub's usual places (``HF_TOKEN``, ``huggingface-cli login``); this
module never reads, prints or stores it. ``HF_ENDPOINT`` points at another Hub server.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import yaml

from pipeline.runs import run_folder
from pipeline.errors import PipelineError
from pipeline.runs.export import export_run
from pipeline.runs.loading import LoadOptions
from pipeline.log import log
from pipeline.runs.model_card import model_card, public_config, public_name
from pipeline.models.pretrained import ALIASES
from pipeline.recipe import Recipe
from pipeline.models.sentence_classifier import is_setfit_run
from pipeline.models.sentence_classifier import run_files as setfit_run_files

# Run-folder files that describe the run and travel with the weights.
EXTRAS = ("labels.json", "metrics.json", "confusion_matrix.png", "confusion_matrix.txt",
          "training_curves.png", "entity_confusion.txt")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


def stage(run_dir: Path, repo_id: str, recipe: Recipe, merged: bool, into: Path,
          options: LoadOptions = LoadOptions(device="cpu", precision="fp32")) -> list[Path]:
    """Copy (or, with ``merged``, export) what goes to the Hub into ``into``; return the files."""
    config = run_folder.load_run_config(run_dir)
    adapter = run_folder.is_adapter_run(run_dir)
    if merged and adapter:
        export_run(run_dir, into, recipe.model_class(config), "transformers", options)
    else:
        weights = ["adapter_config.json", "adapter_model.safetensors"] if adapter else ["config.json", "model.safetensors"]
        if is_setfit_run(run_dir):
            weights += setfit_run_files(run_dir)
        for name in weights + list(TOKENIZER_FILES):
            if (run_dir / name).exists():
                (into / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(run_dir / name, into / name)
        for name in weights:
            if not (into / name).exists():
                raise PipelineError(f"run folder {run_dir} has no {name}; the run did not finish, retrain it")
    for name in EXTRAS:
        if (run_dir / name).exists() and not (into / name).exists():
            shutil.copy2(run_dir / name, into / name)
    # The run's config as the card shows it: no local paths.
    (into / run_folder.CONFIG_FILE).write_text(yaml.safe_dump(public_config(config), sort_keys=False), encoding="utf-8")
    base_hub_id = ALIASES[config.model].hub_id if config.model in ALIASES else public_name(config.model)
    adapter_config = into / "adapter_config.json"
    if adapter_config.exists():  # point the adapter at the base model's Hub id, not a local folder
        data = json.loads(adapter_config.read_text())
        data["base_model_name_or_path"] = base_hub_id
        adapter_config.write_text(json.dumps(data, indent=2))
    card = model_card(run_dir, recipe, repo_id=repo_id, base_id=base_hub_id, merged=merged and adapter)
    (into / "README.md").write_text(card, encoding="utf-8")
    return sorted(p for p in into.rglob("*") if p.is_file())


def push(run_dir: str | Path, repo_id: str, recipe: Recipe, private: bool = False, merged: bool = False,
         dry_run: bool = False, options: LoadOptions = LoadOptions(device="cpu", precision="fp32")) -> list[str]:
    """Upload a run; with ``dry_run`` only list what would go. Returns the uploaded file names."""
    run_dir = Path(run_dir)
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise PipelineError(f"--repo-id {repo_id!r} is not USER/NAME")
    with tempfile.TemporaryDirectory() as tmp:
        files = stage(run_dir, repo_id, recipe, merged, Path(tmp), options)
        names = [p.relative_to(tmp).as_posix() for p in files]
        for name, p in zip(names, files):
            log.info(f"{'would upload' if dry_run else 'uploading'} {name} ({p.stat().st_size:,} bytes)")
        if dry_run:
            return names
        from huggingface_hub import HfApi
        from huggingface_hub.errors import HfHubHTTPError

        api = HfApi()
        try:
            api.create_repo(repo_id, private=private, exist_ok=True)
            api.upload_folder(folder_path=tmp, repo_id=repo_id, commit_message=f"Upload {run_dir.name} (finetune-pipeline)")
        except HfHubHTTPError as exc:
            status = exc.response.status_code if exc.response is not None else "?"
            hint = "log in with `hf auth login` or set HF_TOKEN" if status in (401, 403) else "check the repo id and network"
            raise PipelineError(f"the Hub refused the upload to {repo_id} (HTTP {status}); {hint}") from None
        except (OSError, ValueError) as exc:
            raise PipelineError(f"could not reach the Hub to upload {repo_id} ({type(exc).__name__}); "
                                f"check the network or HF_ENDPOINT") from None
    log.info(f"pushed {len(names)} files to {repo_id}")
    return names
