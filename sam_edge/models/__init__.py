"""Models: flax vision nets and a haiku transformer."""
