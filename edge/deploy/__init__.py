"""Putting the device side in place as systemd services: on a running device (`install`) or into a Jetson root
filesystem before flashing (`flash-overlay`). The unit files themselves are in the repository's systemd/."""
