"""DDP on scikit-learn's bundled digits data set (no download)."""
