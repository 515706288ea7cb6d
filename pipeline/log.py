"""Output of the library: everything it reports goes through the ``pipeline`` logger, and the command
line decides what reaches the terminal (``use_terminal``): progress and results on stdout, warnings
on stderr, chatter of the libraries underneath turned down. A program that imports the pipeline
gets Python's usual logging behaviour instead.
"""
from __future__ import annotations

import logging
import os
import sys

log = logging.getLogger("pipeline")
# A record with this attribute set (``extra={TRANSIENT: True}``) is a status line: drawn in place on a
# terminal and replaced by the next line, left out of a log that is not a terminal.
TRANSIENT = "transient"


class _Terminal(logging.Handler):
    """Messages as they are, INFO to stdout and WARNING and above to stderr, each stream looked up
    when the message is written (so redirected or captured streams receive it)."""

    def __init__(self) -> None:
        super().__init__()
        self.drawn = False  # a transient line is on the terminal, to be overwritten

    def emit(self, record: logging.LogRecord) -> None:
        warning = record.levelno >= logging.WARNING
        stream = sys.stderr if warning else sys.stdout
        if getattr(record, TRANSIENT, False):
            if stream.isatty():
                stream.write("\r\033[K" + self.format(record))
                stream.flush()
                self.drawn = True
            return
        if self.drawn:
            sys.stdout.write("\r\033[K")
            self.drawn = False
        stream.write(("warning: " if warning else "") + self.format(record) + "\n")
        stream.flush()


def use_terminal() -> None:
    """Route the pipeline's log to the terminal once, and quiet the libraries' own notices (hub
    notices, newly-initialised-head warnings), which would bury the pipeline's lines."""
    if not any(isinstance(h, _Terminal) for h in log.handlers):
        log.addHandler(_Terminal())
        log.setLevel(logging.INFO)
        log.propagate = False
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # Libraries that draw their own tqdm bars (TRL's reference pass) read this; our own bars pass
    # `disable` explicitly, which it does not override.
    os.environ.setdefault("TQDM_DISABLE", "1")
    import warnings

    import transformers

    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*pin_memory.*")
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    if "datasets" in sys.modules:
        import datasets

        datasets.logging.set_verbosity_error()
        datasets.disable_progress_bars()
    else:  # read when datasets is imported, so commands that never load data don't pay for it
        os.environ.setdefault("DATASETS_VERBOSITY", "error")
        os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
