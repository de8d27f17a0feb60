"""Builds: BentoML service generation, the content-addressed build cache, smoke tests."""
