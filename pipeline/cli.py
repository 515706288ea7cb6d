"""The ``pipeline`` command: parse, load the config, call the library. Nothing else lives here."""
from __future__ import annotations

import argparse
import os
import sys
import traceback
from pathlib import Path
from typing import Any, Iterator, Sequence

from pipeline.errors import PipelineError
from pipeline.log import use_terminal


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    use_terminal()
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

    def command(name: str, handler: Any, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common], help=help)
        p.set_defaults(handler=handler)
        return p

    p = command("train", cmd_train, "train a model from a recipe config")
    p.add_argument("config", help="a YAML config file, or the name of a shipped config (see `pipeline recipes`)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="e.g. training.num_train_epochs=1")
    p.add_argument("--overwrite", action="store_true", help="replace the run already in output_dir")
    p.add_argument("--allow-pickle", action="store_true",
                   help="let the base model load from pickle weights (.bin), which can run code")
    p.add_argument("--resume", nargs="?", const="latest", metavar="CHECKPOINT",
                   help="continue an interrupted run from its latest complete checkpoint (or the one given)")

    p = command("tune", cmd_tune, "search training settings (Optuna), each trial scored on the validation split")
    p.add_argument("config", help="a YAML config file, or the name of a shipped config")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="e.g. dataset.max_train_samples=2000")
    p.add_argument("--trials", type=int, default=12, help="settings to try (default 12)")
    p.add_argument("--timeout", type=float, metavar="SECONDS", help="start no trial after this many seconds")
    p.add_argument("--output", help="the tune folder (default: the config's output_dir + _tune)")
    p.add_argument("--overwrite", action="store_true", help="replace a search already in the tune folder")

    p = command("evaluate", cmd_evaluate, "score a finished run on a split of its dataset")
    p.add_argument("run", help="a run folder (the output_dir of a training run)")
    p.add_argument("--split", default="validation", help="validation (default) or test")
    p.add_argument("--batch-size", type=int, help="texts per forward pass (default: 64 on a CPU, 256 on a GPU)")
    _add_load_options(p, backend=True)

    p = command("predict", cmd_predict, "label texts with a finished run")
    p.add_argument("run", help="a run folder")
    _add_input_options(p)
    p.add_argument("--output", help="write predictions to a .jsonl or .csv file instead of stdout")
    p.add_argument("--json", action="store_true", help='print JSON lines {"text", "label", "score"}')
    p.add_argument("--top-k", type=int, help="also give the k best labels with their scores")
    _add_engine_options(p)

    p = command("ner", cmd_ner, "find named entities with a token-classification run")
    p.add_argument("run", help="a token_classification run folder")
    _add_input_options(p)
    p.add_argument("--json", action="store_true", help='print JSON lines {"text", "entities": [...]}')
    p.add_argument("--batch-size", type=int, help="sentences per forward pass (default: 32 on a CPU, 128 on a GPU)")
    _add_load_options(p, backend=True)

    p = command("qa", cmd_qa, "answer questions from their contexts with a question-answering run")
    p.add_argument("run", help="a question_answering run folder")
    p.add_argument("--question", action="append", default=[], help="a question (repeatable)")
    p.add_argument("--context", action="append", default=[],
                   help="the passage to answer from: one for every question, or one per --question")
    p.add_argument("--file", help="questions, streamed: .jsonl, .csv or .tsv with question and context columns")
    p.add_argument("--question-column", default="question", help="the question field of --file")
    p.add_argument("--context-column", default="context", help="the context field of --file")
    p.add_argument("--top-k", type=int, help="also give the k best answers with their scores")
    p.add_argument("--json", action="store_true", help='print JSON lines {"question", "answer", "score", "start", "end"}')
    p.add_argument("--batch-size", type=int, help="windows per forward pass (default: 32 on a CPU, 128 on a GPU)")
    p.add_argument("--max-length", type=int, help="tokens per window (default: the run's max_length)")
    _add_load_options(p, backend=True)

    p = command("serve", cmd_serve, "serve a run over HTTP (POST /predict; question answering: POST /qa; decoders: "
                                    "OpenAI's POST /v1/chat/completions)")
    p.add_argument("run", help="a run folder")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--api-key", help="require `Authorization: Bearer KEY` on /predict and /adapters "
                                     "(default: $PIPELINE_API_KEY)")
    p.add_argument("--max-queue", type=int, default=1024, help="texts waiting at most; more get HTTP 429")
    _add_engine_options(p)

    p = command("export", cmd_export, "save a run as a plain transformers model, an ONNX graph or an OpenVINO IR")
    p.add_argument("run", help="a run folder")
    p.add_argument("out", help="a new folder for the model")
    p.add_argument("--format", default="transformers", choices=("transformers", "onnx", "openvino"),
                   help="transformers (default), onnx (ONNX Runtime) or openvino (OpenVINO IR); the graph "
                        "formats hold classifiers, with any adapter merged")
    p.add_argument("--merge", action="store_true",
                   help="merge a LoRA adapter into its base (required for LoRA runs in transformers format)")
    _add_trust_options(p)

    p = command("push", cmd_push, "upload a run (adapter or merged model) to the Hub")
    p.add_argument("run", help="a run folder")
    p.add_argument("--repo-id", required=True, help="USER/NAME on the Hub")
    p.add_argument("--private", action="store_true")
    p.add_argument("--merged", action="store_true", help="upload the LoRA adapter merged into its base")
    p.add_argument("--dry-run", action="store_true", help="list what would be uploaded; send nothing")
    _add_trust_options(p)

    p = command("compare", cmd_compare, "train one config with several methods and tabulate the measurements")
    p.add_argument("config", help="a YAML config file or a shipped config name")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="applied to every method's run")
    p.add_argument("--methods", default="full,head,lora,dora,ia3,prompt",
                   help="comma-separated, from: full, head, lora, dora, adalora, ia3, prompt, prefix")
    p.add_argument("--output-dir", help="where the runs and comparison.{md,json,png} go (default: runs/compare_CONFIG)")
    p.add_argument("--keep-learning-rate", action="store_true",
                   help="use the config's learning rate for every method instead of each method's default")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier comparison in the output folder")

    p = command("advise", cmd_advise, "estimate memory per method and recommend one")
    p.add_argument("--model", default="minilm", help="alias, Hub id (bert-base-uncased ships offline) or folder")
    p.add_argument("--train-size", type=int, required=True, help="training rows")
    p.add_argument("--gpu-memory", default="16GB", help="accelerator memory, e.g. 16GB")
    p.add_argument("--tasks", type=int, default=1, help="tasks that will share one deployment")
    p.add_argument("--recipe", default="sequence_classification",
                   help="sequence_classification (default), token_classification or question_answering: the task "
                        "head is sized and trains in full beside an adapter")
    p.add_argument("--labels", type=int, help="the head's labels (default: 2; token_classification 9)")
    p.add_argument("--seq-len", type=int, help="tokens per row (default: 128; question_answering: 384-token windows)")
    p.add_argument("--batch-size", type=int, default=32)

    p = command("lora-params", cmd_lora_params, "count LoRA parameters for a model, from its config")
    p.add_argument("--model", default="minilm", help="alias, Hub id (bert-base-uncased ships offline) or folder")
    p.add_argument("--r", type=int, default=8)
    p.add_argument("--targets", help="comma-separated module names (output = the attention output projection; "
                                     "default: the architecture's query/value projections)")
    p.add_argument("--recipe", help="sequence_classification, token_classification or question_answering: count on "
                                    "the task model, whose fresh head trains in full beside the adapter (default: "
                                    "the bare base)")

    p = command("fill-mask", cmd_fill_mask, "predict the [MASK] tokens of a text")
    p.add_argument("model", help="alias (bert-tiny-mlm), Hub id, folder or masked_lm run folder")
    p.add_argument("text", help='e.g. "The capital of France is [MASK]." (several masks allowed)')
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--json", action="store_true", help="print the predictions as JSON")
    _add_load_options(p)

    p = command("generate", cmd_generate, "continue a prompt with a causal LM")
    p.add_argument("model", help="alias (smollm2), Hub id, folder or causal_lm run folder")
    p.add_argument("prompt")
    p.add_argument("--max-new-tokens", type=int, default=50)
    p.add_argument("--temperature", type=float, default=0.8, help="0 = greedy")
    p.add_argument("--top-p", type=float, default=0.95)
    p.add_argument("--num-return-sequences", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    _add_load_options(p)

    p = command("chat", cmd_chat, "talk with a decoder run in the terminal, through its chat template")
    p.add_argument("run", help="an instruction, preference or causal_lm run folder")
    p.add_argument("--system", help="a system prompt that opens the conversation")
    p.add_argument("--prompt", help="answer this one message and exit, instead of an interactive session")
    p.add_argument("--max-new-tokens", type=int, default=256, help="the longest reply, in tokens")
    p.add_argument("--temperature", type=float, default=0.7, help="0 = greedy")
    p.add_argument("--top-p", type=float, default=0.95)
    p.add_argument("--seed", type=int, help="make sampled replies repeatable")
    _add_load_options(p)

    p = command("inspect", cmd_inspect, "show tokens, ids, hidden-state shapes and model sizes")
    p.add_argument("model", help="alias, Hub id, folder or run folder")
    p.add_argument("--text", default="Transfer learning reuses what a model has already learned.")

    p = command("recipes", cmd_recipes, "list the recipes and shipped configs")
    return parser


def _add_input_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--text", action="append", default=[], help="a text (repeatable)")
    p.add_argument("--file", help="texts, streamed: .txt (one per line), .jsonl, .csv or .tsv")
    p.add_argument("--text-column", default="text", help="the text field of a .jsonl/.csv/.tsv file")


def _add_engine_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--adapter", action="append", default=[], metavar="NAME=RUN_DIR",
                   help="another LoRA run of the same base, loaded beside the run's own (repeatable)")
    p.add_argument("--use", help="the adapter to predict with (default: the run's own)")
    p.add_argument("--batch-size", type=int, help="texts per forward pass (default: 64 on a CPU, 256 on a GPU)")
    p.add_argument("--max-length", type=int, help="truncate texts here (default: the run's max_length)")
    _add_load_options(p, backend=True)


def _add_load_options(p: argparse.ArgumentParser, backend: bool = False) -> None:
    if backend:
        p.add_argument("--backend", default="auto", choices=("torch", "onnxruntime", "openvino", "auto"),
                       help="auto (default): the fastest installed for the device and precision, torch where "
                            "a runtime cannot hold the run; torch; onnxruntime or openvino (the run converted "
                            "once, cached in RUN/exports/)")
    p.add_argument("--device", default="auto", help="auto (a GPU when there is one), cpu, cuda, cuda:N or mps")
    p.add_argument("--precision", choices=("fp32", "bf16", "int8"),
                   help="fp32, bf16, or int8 (CPU: int8 weights, activations quantized as they run); "
                        "default: bf16 on a bf16-capable GPU, else fp32")
    _add_trust_options(p)


def _add_trust_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trust-remote-code", action="store_true",
                   help="run Python code that the model ships (never taken from a run folder's config)")
    p.add_argument("--allow-pickle", action="store_true",
                   help="load pickle weights (.bin), which can run code (never taken from a run folder's config)")


def load_options(args: argparse.Namespace) -> Any:
    """How the command loads a run: its --device, --precision, --backend and trust flags (export and
    push: the CPU, fp32, torch)."""
    from pipeline.api import load_options as options

    return options(device=getattr(args, "device", "cpu"), precision=getattr(args, "precision", "fp32"),
                   backend=getattr(args, "backend", "torch"), trust_remote_code=args.trust_remote_code,
                   allow_pickle=args.allow_pickle)


def load_options_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return {"device": args.device, "backend": args.backend, "precision": args.precision,
            "trust_remote_code": args.trust_remote_code, "allow_pickle": args.allow_pickle}


def load_model(args: argparse.Namespace, command: str) -> Any:
    """The run loaded through the API, after checking that its recipe supports ``command``."""
    from pipeline.api import load, run_recipe

    run_recipe(args.run, command)
    adapters = {}
    for item in getattr(args, "adapter", []):
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise PipelineError(f"--adapter {item!r} is not NAME=RUN_DIR")
        adapters[name] = path
    return load(args.run, adapters=adapters, batch_size=args.batch_size, max_length=getattr(args, "max_length", None),
                **load_options_kwargs(args))


def cmd_train(args: argparse.Namespace) -> int:
    from pipeline.api import train

    if int(os.environ.get("RANK", "0")) != 0:  # distributed: only the main process prints progress
        sys.stdout = open(os.devnull, "w")
    train(args.config, args.overrides, overwrite=args.overwrite, resume=args.resume, allow_pickle=args.allow_pickle)
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from pipeline.api import load_config
    from pipeline.planning.tune import tune
    from pipeline.registry import get_recipe

    config = load_config(args.config, args.overrides)
    tune(config, get_recipe(config.recipe), args.trials, args.timeout,
         Path(args.output) if args.output else None, overwrite=args.overwrite)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from pipeline.api import evaluate

    evaluate(args.run, args.split, batch_size=args.batch_size, **load_options_kwargs(args))
    return 0


def input_texts(args: argparse.Namespace, what: str) -> Iterator[str]:
    """The --text or --file texts; a bad or empty file fails before a model loads or output is created."""
    import itertools

    from pipeline.data.readers import iter_texts

    if not args.text and not args.file:
        raise PipelineError(f"no texts to {what}; give --text TEXT (repeatable) or --file FILE")
    texts = iter_texts(Path(args.file), args.text_column) if args.file else iter(args.text)
    first = next(texts, None)
    if first is None:
        raise PipelineError(f"{args.file} holds no texts")
    return itertools.chain([first], texts)


def cmd_predict(args: argparse.Namespace) -> int:
    from pipeline.inference.engines import (
        PredictionWriter,
        open_output,
        output_format,
        predict_stream,
    )

    if args.top_k is not None and args.top_k <= 0:
        raise PipelineError(f"--top-k must be positive, got {args.top_k}")
    output = Path(args.output) if args.output else None
    fmt = output_format(output, args.json)
    texts = input_texts(args, "predict")
    engine = load_model(args, "predict").engine
    with open_output(output) as out:
        count = predict_stream(engine, texts, PredictionWriter(out, fmt, args.top_k),
                               top_k=args.top_k, adapter=args.use, progress=bool(args.file))
    if output:
        print(f"wrote {count} predictions to {output}", file=sys.stderr)
    return 0


def cmd_ner(args: argparse.Namespace) -> int:
    import json

    from pipeline.api import run_recipe
    from pipeline.inference.engines import chunks

    run_recipe(args.run, "ner")  # a run of another task fails before its texts are read
    texts = input_texts(args, "tag")
    model = load_model(args, "ner")
    for chunk in chunks(texts, 1024):
        for text, entities in zip(chunk, model(chunk)):
            if args.json:
                print(json.dumps({"text": text, "entities": entities}, ensure_ascii=False))
            else:
                found = "; ".join(f"{e['text']}: {e['entity']} ({e['score']:.2f})" for e in entities)
                print(f"{text}\n  -> {found or 'no entities'}")
    return 0


def cmd_qa(args: argparse.Namespace) -> int:
    import json

    from pipeline.api import run_recipe
    from pipeline.inference.engines import chunks

    run_recipe(args.run, "qa")  # a run of another task fails before its questions are read
    if args.top_k is not None and args.top_k <= 0:
        raise PipelineError(f"--top-k must be positive, got {args.top_k}")
    pairs = question_pairs(args)
    model = load_model(args, "qa")
    for chunk in chunks(pairs, 256):
        for answer in model(chunk, top_k=args.top_k):
            best = answer[0] if args.top_k else answer
            if args.json:
                print(json.dumps({**best, "top_k": answer} if args.top_k else best, ensure_ascii=False))
            else:
                print(f"{best['answer']}\t{best['score']:.4f}\t{best['question']}")
    return 0


def question_pairs(args: argparse.Namespace) -> Iterator[dict[str, str]]:
    """The questions with their contexts, from --question/--context or streamed from --file; the first
    problem stops the command before a model loads."""
    import itertools

    from pipeline.data.readers import iter_question_pairs

    if args.file:
        if args.question or args.context:
            raise PipelineError("give --file, or --question with --context, not both")
        pairs = iter_question_pairs(Path(args.file), args.question_column, args.context_column)
    else:
        if not args.question or not args.context:
            raise PipelineError("no questions to answer; give --question Q --context C (repeatable), or --file FILE")
        if len(args.context) not in (1, len(args.question)):
            raise PipelineError(f"{len(args.question)} questions and {len(args.context)} contexts; give one context "
                                f"for all questions or one per question")
        contexts = args.context * len(args.question) if len(args.context) == 1 else args.context
        pairs = iter([{"question": q, "context": c} for q, c in zip(args.question, contexts)])
    first = next(pairs, None)
    if first is None:
        raise PipelineError(f"{args.file} holds no questions")
    return itertools.chain([first], pairs)


def cmd_serve(args: argparse.Namespace) -> int:
    from pipeline.api import run_recipe
    from pipeline.inference.serve import serve

    api_key = args.api_key or os.environ.get("PIPELINE_API_KEY") or None
    engine = load_model(args, "serve").engine
    if run_recipe(args.run).causal:
        from pipeline.inference.chat import chat_model

        engine = chat_model(engine, Path(args.run).resolve().name)
    serve(engine, args.host, args.port, api_key=api_key, max_queue=args.max_queue)
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    from pipeline.api import run_recipe
    from pipeline.inference.chat import Reply, Settings, chat_loop, chat_model
    from pipeline.inference.lm_tools import TextGenerator, check_generation

    run_recipe(args.run, "chat")
    check_generation(args.prompt if args.prompt is not None else "-", args.max_new_tokens, args.temperature,
                     args.top_p, 1)
    settings = Settings(max_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p, seed=args.seed)
    chat = chat_model(TextGenerator.load(args.run, load_options(args)), Path(args.run).resolve().name)
    if args.prompt is None:
        return chat_loop(chat, settings, system=args.system)
    messages = ([{"role": "system", "content": args.system}] if args.system else []) + [
        {"role": "user", "content": args.prompt}]
    for piece in chat.stream(messages, settings):
        print("" if isinstance(piece, Reply) else piece, end="\n" if isinstance(piece, Reply) else "", flush=True)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from pipeline.api import run_recipe
    from pipeline.runs import run_folder
    from pipeline.runs.export import export_run

    recipe = run_recipe(args.run, "export")
    if args.format == "transformers" and run_folder.is_adapter_run(args.run) and not args.merge:
        raise PipelineError(f"{args.run} holds an adapter, not a model; pass --merge to fold it into its base")
    model_class = recipe.model_class(run_folder.load_run_config(args.run))
    out = export_run(args.run, args.out, model_class, args.format, load_options(args))
    loads_with = {"transformers": f"{model_class.__name__}.from_pretrained",
                  "onnx": "onnxruntime.InferenceSession(model.onnx)",
                  "openvino": "openvino.Core().compile_model(openvino_model.xml)"}[args.format]
    print(f"exported {args.run} to {out} (loads with {loads_with})")
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    from pipeline.api import run_recipe
    from pipeline.runs.hub import push

    push(args.run, args.repo_id, run_recipe(args.run, "push"), private=args.private, merged=args.merged,
         dry_run=args.dry_run, options=load_options(args))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from pipeline.config.loader import resolve_config_path
    from pipeline.planning.compare import compare

    config = resolve_config_path(args.config)
    out = args.output_dir or f"runs/compare_{config.stem}"
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    compare(config, args.overrides, methods, out, overwrite=args.overwrite, keep_learning_rate=args.keep_learning_rate)
    return 0


def cmd_advise(args: argparse.Namespace) -> int:
    from pipeline.planning.advise import advise, format_advice, parse_memory

    memory = parse_memory(args.gpu_memory)
    advice = advise(args.model, args.train_size, memory, args.tasks, args.seq_len, args.batch_size, args.recipe,
                    args.labels)
    print(format_advice(advice, args.model, memory, args.batch_size))
    return 0


def cmd_lora_params(args: argparse.Namespace) -> int:
    from pipeline.planning.advise import format_lora_count, lora_count

    targets = None if args.targets is None else [t.strip() for t in args.targets.split(",") if t.strip()]
    print(format_lora_count(lora_count(args.model, args.r, targets, args.recipe), args.model))
    return 0


def cmd_fill_mask(args: argparse.Namespace) -> int:
    import json

    from pipeline.inference.lm_tools import fill_mask

    results = fill_mask(args.model, args.text, args.top_k, load_options(args))
    if args.json:
        print(json.dumps(results))
        return 0
    for number, predictions in enumerate(results, 1):
        print(f"mask {number}: " + ", ".join(f"{p['token']} ({p['score']:.3f})" for p in predictions))
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from pipeline.inference.lm_tools import generate

    texts = generate(args.model, args.prompt, args.max_new_tokens, args.temperature, args.top_p,
                     args.num_return_sequences, args.seed, load_options(args))
    for number, text in enumerate(texts, 1):
        print(f"--- {number}\n{text}" if len(texts) > 1 else text)
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from pipeline.inference.lm_tools import inspect

    print(inspect(args.model, args.text))
    return 0


def cmd_recipes(args: argparse.Namespace) -> int:
    print("\n".join(recipe_listing()))
    return 0


def recipe_listing() -> list[str]:
    """``pipeline recipes``: each recipe with the commands its runs support, then each shipped config."""
    import yaml

    from pipeline.recipe import COMMANDS
    from pipeline.registry import config_dir, get_recipe, recipe_names

    lines = []
    for name in recipe_names():
        recipe = get_recipe(name)
        commands = ", ".join(c for c in COMMANDS if c in recipe.commands)
        lines.append(f"recipe  {name:28s} {recipe.summary} (commands: {commands})")
    configs = config_dir()
    for path in sorted(configs.glob("*.yaml")):
        data = yaml.safe_load(path.read_text()) or {}
        data_name = (data.get("dataset") or {}).get("name", "files")
        lines.append(f"config  {path.stem:28s} {data.get('recipe')}, {data.get('model', 'minilm')}, "
                     f"{data.get('method', 'lora')}, {data_name}  ({path.relative_to(configs.parent.parent)})")
    return lines
