"""Device profiles and agent configuration shipped as data."""
