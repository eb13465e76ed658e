"""Stage 2, the bidirectional transformer: model, a lab student's checkpoint import, masked visual token training."""
