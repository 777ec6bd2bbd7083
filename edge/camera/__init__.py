"""Camera sources: the `camera:` config, how each kind is opened, and the supervised latest-frame source."""
from .config import CameraConfig
from .pipelines import check_camera, gstreamer_pipeline, opencv_has_gstreamer
from .source import Frame, FrameSource

__all__ = ["CameraConfig", "Frame", "FrameSource", "check_camera", "gstreamer_pipeline", "opencv_has_gstreamer"]
