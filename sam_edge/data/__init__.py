"""Data: image datasets from TFDS (`image_specs` by name, `images` loaded), text corpora, label
noise, augmentation, and batches drawn on device as a pure function of (seed, step)."""
