"""``tcm train``: the trainer's own command line (:mod:`tcmcodec.training.loop`)."""

from __future__ import annotations

from .registry import command


@command("train", "train a model (options: 'tcm train --help')", passthrough=True)
def cmd_train(argv: list[str]) -> int:
    """Train a TCM model (tcmcodec.training); DDP with torchrun -m tcmcodec.training."""
    from tcmcodec.training import loop

    return loop.main(argv)
