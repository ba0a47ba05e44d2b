"""Models: flax vision networks (MLP, CNN, residual networks with BatchNorm), the haiku
transformer, the losses, the linearized model, mixed precision, and the image networks by name
with their flags (`registry`)."""
