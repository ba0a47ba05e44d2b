"""Datasets read once into device memory."""
