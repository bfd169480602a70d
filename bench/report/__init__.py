"""Reports built from a results CSV: plots, paper tables, comparisons and regression gates.

Each submodule reads the tidy results schema (:mod:`vae_bench.results`) and nothing else, so a
report can be rebuilt from a CSV long after the run, on a machine without the models.
"""
