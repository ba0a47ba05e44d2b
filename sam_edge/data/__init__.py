"""Data: image datasets from TFDS (`image_specs` by name, `images` loaded), text corpora, label
noise, the images' normalisation (`normalize`) and augmentation (`input_spec` names them,
`augment_pipeline` runs flip and crop (`augment`), `autoaugment`, `brightness` and `cutout`), and
batches drawn on device as a pure function of (seed, step)."""
