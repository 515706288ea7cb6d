"""Answer SQuAD-style questions with transformers 4's `pipeline("question-answering")`, which
transformers 5 removed: the client most users of an extractive reader have. `bench/squad.py` runs this
file with the Python of a separate environment holding transformers 4 (it imports nothing from this
project) and compares its answers and speed with `pipeline qa --file`.

    python bench/transformers4_qa.py MODEL_DIR QUESTIONS.jsonl --max-length 384 --doc-stride 128 \
        --max-answer-length 30 [--batch-size N]

Prints one JSON object: the transformers version, the seconds spent answering (loading left out) and
the answers in order.
"""
from __future__ import annotations

import argparse
import json
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("questions", help="JSONL with question and context")
    parser.add_argument("--max-length", type=int, required=True)
    parser.add_argument("--doc-stride", type=int, required=True)
    parser.add_argument("--max-answer-length", type=int, required=True)
    parser.add_argument("--batch-size", type=int, default=1, help="windows per forward pass (the pipeline's default: 1)")
    args = parser.parse_args()

    import transformers
    from transformers import pipeline

    rows = [json.loads(line) for line in open(args.questions, encoding="utf-8")]
    reader = pipeline("question-answering", model=args.model, tokenizer=args.model, device=-1)
    start = time.perf_counter()
    # Our decoding's settings: spans up to max_answer_length tokens, cut at token offsets rather than
    # widened to whole words, so a differing answer means a differing choice of span.
    found = reader(question=[r["question"] for r in rows], context=[r["context"] for r in rows],
                   max_seq_len=args.max_length, doc_stride=args.doc_stride,
                   max_answer_len=args.max_answer_length, align_to_words=False, batch_size=args.batch_size)
    seconds = time.perf_counter() - start
    found = found if isinstance(found, list) else [found]
    print(json.dumps({"transformers": transformers.__version__, "seconds": seconds,
                      "answers": [a["answer"] for a in found]}))


if __name__ == "__main__":
    main()
