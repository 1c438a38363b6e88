"""Model loading, fine-tuning, the no-transfer controls and file-format safety."""
