"""Benchmarks of vitjob: ``python -m bench`` runs them all (``bench.suite``); each script runs alone too."""
