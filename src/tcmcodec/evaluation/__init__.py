"""Evaluation: metrics, results JSON, measuring codecs on image sets, classical anchors, BD-rate, plots.

- :mod:`~tcmcodec.evaluation.metrics`: PSNR, MS-SSIM (one definition each);
- :mod:`~tcmcodec.evaluation.results`: CompressAI-style results JSON (read, validate, write);
- :mod:`~tcmcodec.evaluation.evaluate`: ``tcm eval`` (real ``.tcm`` files of a TCM model);
- :mod:`~tcmcodec.evaluation.codecs` / :mod:`~tcmcodec.evaluation.anchors`: classical codecs
  (JPEG, WebP, AVIF, ...) and ``tcm anchors``;
- :mod:`~tcmcodec.evaluation.bdrate`, :mod:`~tcmcodec.evaluation.plot`: Bjøntegaard deltas, RD plots.
"""
