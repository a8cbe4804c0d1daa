"""The job spec as users write it: the ``JobSpec`` model and its checks (``spec``), job and pipeline
status types (``status``), and the JSON schemas derived from the model for the VitJob CRD and the
chart's values (``schema``). Imports nothing of the layers built on it (render, pipeline, backends)."""
