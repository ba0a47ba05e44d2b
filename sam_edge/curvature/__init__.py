"""Curvature of the training loss.

  * `objective`: the measured loss L(w) = ℓ(f(w, x), y), optionally over chunks;
  * `hvp`, `lanczos`, `power`, `eigensolvers`: Hessian-vector products and the top eigensolvers;
  * `measure`: one measurement of λ1..λk against the method's edge, compiled once per run;
  * `kind`, `kinds/`, `registry`: the curvature kinds beyond λ1 (one entry each: flags, checks,
    measurement, record keys, line, TensorBoard scalars, figures) and the registry of them;
  * `operators`, `trace`, `slq`, `spectrum`, `blocks`, `extremes`: the numerics the kinds use.

This package file imports nothing, so `registry` can be read without jax.
"""
