"""The one error that bad input raises, and the helpers that turn any failure into its one line '<path>: <problem>'."""

from __future__ import annotations

import contextlib
import math
import os
import re
from collections.abc import Iterator

_KNOWN_PROBLEMS = (  # library error text -> what it means for the user
    (r"CRC check failed", "gzip CRC check failed — file is corrupt"),
    (r"Incorrect length of data produced", "gzip length check failed — file is corrupt"),
    (r"Compressed file ended|end-of-stream marker", "truncated: the gzip stream ends early"),
    (r"Not a gzipped file", "not a gzip-compressed file"),
    (r"fread got only|expected \d+ bytes but received|not read completely", "truncated: less voxel data than declared"),
    (r"gzFile|_nrrdGzRead|while decompressing data|incorrect data check", "corrupt compressed voxel data"),
    (r"Unable to determine ImageIO reader", "not a readable image file"),
    (r"cannot identify image file", "not a readable PNG, JPEG, BMP or TIFF image (unknown format or corrupt header)"),
    (r"image file is truncated", "truncated: the picture's data ends early"),
    (
        r"broken data stream|unrecognized data stream|PNGImageIO\(0x[0-9a-f]+\): Error while reading",
        "corrupt or truncated picture data",
    ),
)


class ImageReadError(ValueError):
    """Raised for unreadable/invalid input; str(err) is one line: '<path>: <problem>'."""

    def __init__(self, path: str | os.PathLike, problem: object) -> None:
        self.path = os.fspath(path)
        self.problem = _one_line(problem)
        super().__init__(f"{self.path}: {self.problem}")

    def __reduce__(self):
        return type(self), (self.path, self.problem)


@contextlib.contextmanager
def read_errors(path: str | os.PathLike, context: str = "") -> Iterator[None]:
    """Turn any failure while reading `path` into one ImageReadError."""
    prefix = f"{context}: " if context else ""
    try:
        yield
    except (ImageReadError, MemoryError):
        raise
    except PermissionError:
        raise ImageReadError(path, f"{prefix}permission denied") from None
    except FileNotFoundError:
        raise ImageReadError(path, f"{prefix}file not found") from None
    except Exception as error:
        raise ImageReadError(path, prefix + problem_of(error)) from error


def problem_of(error: BaseException) -> str:
    """A short reason from a library exception (ITK and nibabel messages run over several lines)."""
    text = str(error)
    for pattern, problem in _KNOWN_PROBLEMS:
        if re.search(pattern, text):
            return problem
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    line = next((line for line in lines if "ERROR:" in line), lines[0] if lines else type(error).__name__)
    return re.sub(r"^.*?ERROR:\s*(\w+\(0x[0-9a-f]+\):\s*)?", "", line)


def check_size(path: str | os.PathLike, shape: tuple[int, ...], itemsize: int, max_bytes: int) -> None:
    """Refuse an image whose decoded data would exceed `max_bytes`, before decoding it."""
    nbytes = math.prod(shape) * itemsize
    if nbytes > max_bytes:
        voxels = "x".join(map(str, shape))
        raise ImageReadError(
            path, f"header declares {voxels} voxels ({_size(nbytes)}), more than the limit of {_size(max_bytes)}"
        )


def _size(nbytes: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{nbytes} bytes"


def _one_line(text) -> str:
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return (lines[0] if lines else "unknown problem")[:300]
