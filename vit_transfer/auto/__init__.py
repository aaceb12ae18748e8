"""``vit-transfer auto``: the best transfer for a folder of images, chosen on validation, never below the probe."""
