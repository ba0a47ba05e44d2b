"""Models: flax vision networks (MLP, CNN, residual networks with BatchNorm), the haiku
transformer, the losses, the linearized model, mixed precision, and their names (`catalog`)."""
