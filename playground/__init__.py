"""structured-playground: constrained decoding, side by side with free decoding."""
