"""What the box reads of itself (jtop on a Jetson, psutil/procfs elsewhere) as one Snapshot type, and the governor
that decides on it."""
