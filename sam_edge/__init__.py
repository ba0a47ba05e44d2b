"""sam-edge: SAM and edge-of-stability experiments in JAX."""
