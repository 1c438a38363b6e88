"""Image classification: the vision-specific parts, with plain array/tensor interfaces.

decode        safe Pillow decoding (size, pixel and decompression-bomb caps; one InputError per bad file)
preprocess    Preprocess (HF preprocessor_config.json), resize to uint8, normalise to float tensors
sources       DataFrames of image paths: class folders, CSV/Parquet tables, builtin ELPV, sklearn digits
descriptors   per-image brightness, contrast, sharpness, width, height, aspect (for drift)
models        EfficientNet(-Lite) and Hugging Face image classifiers: logits, pooled features, stage states
inference     the forward pass over a split (one pass for logits, features and stages)
convert       pickled checkpoint -> safetensors folder (torch.load(weights_only=True) only)
finetune      head | last_blocks | full | lora fine-tuning, seeded, cached by content
controls      M0: a small CNN trained from scratch, and HOG/pixel features + logistic regression
attribution   pixel integrated gradients with the completeness criterion; region share; overlays

Nothing here imports torch, Pillow or transformers at import time.
"""
