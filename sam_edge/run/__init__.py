"""One run, end to end: its settings and problem, the jitted pieces, the time-limited loop that
measures on a schedule, the outputs (pickle, PDFs, TensorBoard), checkpoints and their lock, the
worker thread that answers signals, the devices and the environment."""
