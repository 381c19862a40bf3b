"""Segmenting videos and camera streams frame by frame, in constant memory."""
import os
from typing import Callable, Iterator, Optional

import cv2
import numpy as np

from .io import atomic_path

__all__ = ["VideoError", "read_frames", "frame_count", "video_fps", "write_video",
           "check_live_view", "show_stream"]

# Drawn frame (RGB) -> what the writer or window shows.
FrameFunction = Callable[[np.ndarray], np.ndarray]


class VideoError(RuntimeError):
    """A video that cannot be read or written, or a camera or display that is not there."""


def _open(source) -> cv2.VideoCapture:
    capture = cv2.VideoCapture(source)
    if not capture.isOpened():
        what = f"camera {source}" if isinstance(source, int) else f"video {source}"
        raise VideoError(f"Cannot open the {what}.")
    return capture


def frame_count(path: str) -> Optional[int]:
    """The number of frames a video file says it has, or None if it does not say."""
    capture = _open(path)
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    capture.release()
    return count if count > 0 else None


def read_frames(source) -> Iterator[np.ndarray]:
    """The RGB frames of a video file (path) or camera (index), one at a time."""
    capture = _open(source)
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                return
            yield frame[:, :, ::-1]
    finally:
        capture.release()


def write_video(path: str, frames: Iterator[np.ndarray], fps: float) -> int:
    """Writes RGB frames (all of one size) as an MP4 video, atomically; returns how many."""
    writer, written = None, 0
    with atomic_path(path) as temporary:
        try:
            for frame in frames:
                if writer is None:
                    height, width = frame.shape[:2]
                    writer = cv2.VideoWriter(temporary, cv2.VideoWriter_fourcc(*"mp4v"), fps,
                                             (width, height))
                    if not writer.isOpened():
                        raise VideoError(f"OpenCV cannot write an MP4 video to {path}.")
                writer.write(np.ascontiguousarray(frame[:, :, ::-1]))
                written += 1
        finally:
            if writer is not None:
                writer.release()
        if not written:
            raise VideoError(f"No frame to write to {path}.")
    return written


def video_fps(path: str, default: float = 25.0) -> float:
    capture = _open(path)
    fps = capture.get(cv2.CAP_PROP_FPS)
    capture.release()
    return fps if fps and fps > 0 else default


def check_live_view(camera: int = 0) -> None:
    """Fails, saying why, unless a window can be shown and the camera opens.

    Raises:
        VideoError: no display (DISPLAY unset), or no such camera.
    """
    if os.name != "nt" and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise VideoError("--webcam shows a live window, and there is no display here (DISPLAY is "
                         "not set): run it on a desktop, or segment a recording with "
                         "--video-input.")
    capture = cv2.VideoCapture(camera)
    opened = capture.isOpened()
    capture.release()
    if not opened:
        raise VideoError(f"No camera {camera} to read from: connect one, or segment a recording "
                         "with --video-input.")


def show_stream(frames: Iterator[np.ndarray], title: str) -> None:
    """Shows RGB frames in a window until the stream ends or Esc / q is pressed."""
    try:
        for frame in frames:
            cv2.imshow(title, np.ascontiguousarray(frame[:, :, ::-1]))
            if cv2.waitKey(1) & 0xFF in (27, ord("q")):
                break
    except cv2.error as e:
        raise VideoError(f"Cannot show a window: {e}") from None
    finally:
        cv2.destroyAllWindows()
