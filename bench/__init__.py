"""Benchmarks of the Inori operator on a real local control plane: ``make bench``.

``python -m bench`` runs every benchmark (``--only delivery`` or ``--only apikeys`` runs one),
prints one markdown table with each figure beside a floor measured in the same run, and writes it
to ``bench/results/latest.md``.
"""
