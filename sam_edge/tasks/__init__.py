"""Experiments: each validates its own flags and builds an experiment.Problem."""
