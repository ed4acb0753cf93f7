"""Models: a plain CNN baseline and one module per paper, assembled from ``fernb.nn``."""
