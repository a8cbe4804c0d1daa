"""The ViT training code every pod runs: model, data, npz conversion, training, evaluation, export.

- ``config``: ``ViTConfig`` and the named presets (``vit-b16``, ``vit-tiny``).
- ``model``: the MindSpore cells, parameter names identical to the ModelZoo seed.
- ``data``: CIFAR-10 binary layout (reader, writers, download) and the MindSpore input pipeline.
- ``npz``: Google ``ViT-B_16.npz`` → MindSpore parameters.
- ``schedule``: learning-rate schedule and optimizer parameter groups.
- ``runtime``: device, mixed precision and distributed set-up.
- ``checkpoints``: the run directory: checkpoints, ``state.json``, ``metrics.jsonl``, resume.
- ``train``, ``evaluate``, ``export``: one stage each.
"""
