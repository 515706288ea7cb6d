"""The ``pipeline`` command: parse, load the config, call the library. Nothing else lives here."""
from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any, Sequence

from pipeline.errors import PipelineError


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    _quiet_libraries()
    try:
        return args.handler(args) or 0
    except PipelineError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: checkpoints saved so far stay in the run folder's checkpoints/", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug or an unforeseen input: one line, the traceback on request
        if args.debug:
            traceback.print_exc()
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        print(f"error: unexpected {type(exc).__name__}: {first} (rerun with --debug for the traceback)",
              file=sys.stderr)
        return 1


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show Python tracebacks")
    parser = argparse.ArgumentParser(prog="pipeline", parents=[common],
                                     description="Fine-tune, evaluate and serve transformer models from YAML recipes.")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    p = sub.add_parser("train", parents=[common], help="train a model from a recipe config")
    p.add_argument("config", help="a YAML config file, or the name of a shipped config (see `pipeline recipes`)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="e.g. training.num_train_epochs=1")
    p.add_argument("--overwrite", action="store_true", help="replace the run already in output_dir")
    p.set_defaults(handler=cmd_train)

    p = sub.add_parser("evaluate", parents=[common], help="score a finished run on a split of its dataset")
    p.add_argument("run", help="a run folder (the output_dir of a training run)")
    p.add_argument("--split", default="validation", help="validation (default) or test")
    p.add_argument("--batch-size", type=int, default=64)
    p.set_defaults(handler=cmd_evaluate)

    p = sub.add_parser("predict", parents=[common], help="label texts with a finished run")
    p.add_argument("run", help="a run folder")
    p.add_argument("--text", action="append", default=[], help="a text to label (repeatable)")
    p.add_argument("--file", help="texts to label: .txt (one per line), .csv/.tsv/.jsonl (column --text-column)")
    p.add_argument("--text-column", default="text")
    p.add_argument("--json", action="store_true", help='print JSON lines {"text", "label", "score"}')
    p.add_argument("--batch-size", type=int, default=64)
    p.set_defaults(handler=cmd_predict)

    p = sub.add_parser("recipes", parents=[common], help="list the recipes and shipped configs")
    p.set_defaults(handler=cmd_recipes)
    return parser


def _quiet_libraries() -> None:
    """Library chatter (hub notices, newly-initialised-head warnings) would bury our own lines."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import warnings

    import datasets
    import transformers

    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*pin_memory.*")
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    datasets.logging.set_verbosity_error()
    datasets.disable_progress_bars()


def resolve_config_path(name: str) -> Path:
    """A path as given, else a shipped config by name (``sst2_lora`` -> recipes/configs/sst2_lora.yaml)."""
    path = Path(name)
    if path.exists() or path.suffix in (".yaml", ".yml") or "/" in name:
        return path
    from recipes import CONFIG_DIR

    return CONFIG_DIR / f"{name}.yaml"


def cmd_train(args: argparse.Namespace) -> int:
    from pipeline.config import load_config
    from pipeline.training import train

    config = load_config(resolve_config_path(args.config), args.overrides)
    train(config, overwrite=args.overwrite)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from pipeline import runs
    from recipes import get_recipe

    config = runs.load_run_config(args.run)
    get_recipe(config.recipe).evaluate_run(Path(args.run), args.split, batch_size=args.batch_size)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from pipeline.inference import TextClassifier

    texts = list(args.text)
    if args.file:
        texts += read_texts(Path(args.file), args.text_column)
    if not texts:
        raise PipelineError("no texts to predict; give --text TEXT (repeatable) or --file FILE")
    classifier = TextClassifier.from_run(args.run, batch_size=args.batch_size)
    for text, prediction in zip(texts, classifier.predict(texts)):
        if args.json:
            print(json.dumps({"text": text, **prediction}, ensure_ascii=False))
        else:
            print(f"{prediction['label']}\t{prediction['score']:.4f}\t{text}")
    return 0


def read_texts(path: Path, column: str) -> list[str]:
    """Texts from a .txt file (one per non-blank line) or a column of a table file."""
    from pipeline.data import read_file, read_text

    if path.suffix == ".txt":
        if not path.is_file():
            raise PipelineError(f"text file {path} does not exist; check the path")
        return [line.rstrip("\r") for line in read_text(path).split("\n") if line.strip()]
    columns = read_file(path)
    if column not in columns:
        raise PipelineError(f"{path} has no column {column!r}; its columns are {', '.join(columns)}; "
                            f"pass --text-column")
    return [str(t) for t in columns[column] if t is not None and str(t).strip()]


def cmd_recipes(args: argparse.Namespace) -> int:
    import yaml

    from recipes import CONFIG_DIR, RECIPES

    for name, summary in RECIPES.items():
        print(f"recipe  {name:28s} {summary}")
    for path in sorted(CONFIG_DIR.glob("*.yaml")):
        data: dict[str, Any] = yaml.safe_load(path.read_text()) or {}
        data_name = (data.get("dataset") or {}).get("name", "files")
        print(f"config  {path.stem:28s} {data.get('recipe')}, {data.get('model', 'minilm')}, "
              f"{data.get('method', 'lora')}, {data_name}  ({path.relative_to(CONFIG_DIR.parent.parent)})")
    return 0
