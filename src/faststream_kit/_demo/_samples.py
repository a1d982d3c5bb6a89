"""The gallery's sample files, made on this machine: a PNG in pure Python, a WebM by ffmpeg.

The video is a VP8 WebM because every Chromium build plays it (H.264 is missing from some
Linux builds). ffmpeg comes from the ``imageio-ffmpeg`` wheel, or from ``PATH``.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import shutil
import struct
import subprocess
import tempfile
import uuid
import zlib
from pathlib import Path

import anyio

VIDEO_SECONDS = 8
# A counter over colour bars, 640x360 at 25 fps, one key frame a second so seeking is quick.
FFMPEG_VIDEO_ARGS = (
    "-f",
    "lavfi",
    "-i",
    f"testsrc=size=640x360:rate=25:duration={VIDEO_SECONDS}",
    "-c:v",
    "libvpx",
    "-b:v",
    "1500k",
    "-deadline",
    "realtime",
    "-cpu-used",
    "8",
    "-g",
    "25",
    "-an",
    "-f",
    "webm",
)


def sample_png(width: int = 640, height: int = 360) -> bytes:
    """An RGB gradient with rings, encoded by hand (PNG spec: signature, IHDR, IDAT, IEND)."""
    center_x, center_y = width // 2, height // 2
    rows = bytearray()
    for y in range(height):
        rows.append(0)  # filter type 0: the row as it is
        green = 255 * y // height
        dy2 = (y - center_y) ** 2
        for x in range(width):
            ring = ((x - center_x) ** 2 + dy2) // 256 % 64 * 4
            rows += bytes((255 * x // width, green, ring))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(bytes(rows), 9))
        + _png_chunk(b"IEND", b"")
    )


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def find_ffmpeg() -> str | None:
    """The ffmpeg inside the ``imageio-ffmpeg`` wheel, else one on ``PATH``, else ``None``."""
    try:
        imageio_ffmpeg = importlib.import_module("imageio_ffmpeg")
        return str(imageio_ffmpeg.get_ffmpeg_exe())
    except (ImportError, RuntimeError):
        return shutil.which("ffmpeg")


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "faststream-kit" / "demo"


async def sample_video(cache_dir: Path | None = None) -> bytes | None:
    """The test-pattern WebM, generated once and cached; ``None`` when there is no ffmpeg."""
    ffmpeg = find_ffmpeg()
    if ffmpeg is None:
        return None
    recipe = hashlib.sha256(" ".join(FFMPEG_VIDEO_ARGS).encode()).hexdigest()[:12]
    name = f"sample-{recipe}.webm"
    fallback = Path(tempfile.gettempdir()) / "faststream-kit-demo"
    for directory in (cache_dir or default_cache_dir(), fallback):
        try:
            directory.mkdir(parents=True, exist_ok=True)
            cached = directory / name
            if not cached.exists():
                await _encode(ffmpeg, cached)
            return cached.read_bytes()
        except OSError as exc:
            problem = exc  # a read-only cache directory: try the temporary one
    raise RuntimeError(f"nowhere to keep the sample video: {problem}")


async def _encode(ffmpeg: str, target: Path) -> None:
    # Written beside the target and renamed: two demos starting at once never read half a file.
    partial = target.with_name(f".{target.name}.{uuid.uuid4().hex}.part")
    try:
        await anyio.run_process(
            [ffmpeg, "-hide_banner", "-loglevel", "error", "-y", *FFMPEG_VIDEO_ARGS, str(partial)]
        )
        os.replace(partial, target)
    except subprocess.CalledProcessError as exc:
        detail = (exc.stderr or b"").decode(errors="replace").strip()[-500:]
        raise RuntimeError(f"ffmpeg could not make the sample video: {detail}") from exc
    finally:
        partial.unlink(missing_ok=True)
