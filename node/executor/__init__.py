"""Sandboxes that run jobs: bubblewrap (default), docker/podman, and a dev-only plain subprocess."""
