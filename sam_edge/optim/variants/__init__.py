"""The SAM variants, one module each (`optim.variant`; the registry is `optim.sam`)."""
