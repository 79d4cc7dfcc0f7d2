"""Training: the config, data, loss and loop of ``tcm train`` (DDP: ``torchrun -m tcmcodec.training``).

- :mod:`tcmcodec.training.loop`: :class:`TrainConfig`, the loss, :func:`train` and the command line;
- :mod:`tcmcodec.training.data`: random crops of image folders or packed crop files.
"""
