"""Pure algorithm functions (tensors in, tensors out) in name registries."""
