"""The object's checksum, verified on the fast path as botocore verifies it."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._crc import crc32

if TYPE_CHECKING:
    from typing_extensions import Buffer  # collections.abc.Buffer from Python 3.12


class _ChecksumMismatch(Exception):
    """The body does not match the checksum S3 stored for the object."""


class _ObjectChecksum:
    """The object's checksum as botocore checks it: the first of its algorithms S3 sent, in
    botocore's order of preference; a composite (multipart) checksum is not checked.

    CRC32C and CRC64NVME need ``awscrt`` here as in botocore; without it they are not checked.
    """

    def __init__(self, algorithm: str, expected: str, update: Callable[[Buffer], None]) -> None:
        self.algorithm = algorithm
        self.expected = expected
        self.update = update
        self._digest: Callable[[], bytes] = lambda: b""

    @classmethod
    def of(cls, response: Any) -> _ObjectChecksum | None:
        if (response.get_header("x-amz-checksum-type") or "").upper() == "COMPOSITE":
            return None
        for algorithm in ("crc64nvme", "crc32c", "crc32", "sha1", "sha256"):
            expected = response.get_header(f"x-amz-checksum-{algorithm}")
            if not expected or "-" in expected:
                continue
            made = cls._make(algorithm, expected)
            if made is not None:
                return made
        return None

    @classmethod
    def _make(cls, algorithm: str, expected: str) -> _ObjectChecksum | None:
        if algorithm in ("sha1", "sha256"):
            hasher = hashlib.new(algorithm)
            checksum = cls(algorithm, expected, hasher.update)
            checksum._digest = hasher.digest
            return checksum
        crc = _crc_function(algorithm)
        if crc is None:
            return None
        width = 8 if algorithm == "crc64nvme" else 4
        state = [0]

        def update(data: Buffer) -> None:
            state[0] = crc(data, state[0])

        checksum = cls(algorithm, expected, update)
        checksum._digest = lambda: state[0].to_bytes(width, "big")
        return checksum

    def verify(self) -> None:
        got = base64.b64encode(self._digest()).decode()
        if got != self.expected:
            raise _ChecksumMismatch(
                f"{self.algorithm} of the body is {got}, S3 stored {self.expected}"
            )


def _crc_function(algorithm: str) -> Callable[[Buffer, int], int] | None:
    if algorithm == "crc32":
        return crc32()
    try:
        from awscrt import checksums  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        return None
    function: Callable[[Buffer, int], int] = getattr(checksums, algorithm)
    return function
