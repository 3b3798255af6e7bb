"""Phase 1: label-guided supervised contrastive pretraining of the text and image encoders.

- :mod:`.config`: ``PretrainConfig`` (the loop's keys at the top level; data, model, loss,
  sampler, eval sections); the five variants are five ``loss`` settings.
- :mod:`.task`: ``PretrainTask``: two parameter-sharing text branches, matching + SupCon.
- :mod:`.evaluate`: held-out retrieval, R-precision and label k-NN.
- :mod:`.run`: data -> task -> :mod:`imagetext.train` -> scores -> export (``scripts/pretrain.py``).
"""
