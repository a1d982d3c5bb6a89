"""``s3_stream``: an S3 object served with the HTTP semantics of a file server.

The SDK is only asked for what HTTP needs: a ``GetObject`` with the client's single range
and conditions (so S3 sends only those bytes, or nothing for a 304), a ``HeadObject`` for
``HEAD``. The body is read in ``chunk_bytes`` pieces (both SDKs iterate in 1 KiB by default),
a boto3 body in one worker thread of the core, and it is closed on completion, on error and
when the client leaves, so the SDK's connection pool never runs dry.

With ``http_client`` (a pyreqwest ``Client``) a ``GET`` takes the fast path: the SDK builds
and signs the ``GetObject`` request (Range, conditions, checksum mode, SSE-C keys) and still
answers every error, and the fast client sends it and reads the body on pyreqwest's own
threads, the object's checksum verified here as botocore would (``_FastObjectBody``).
"""

from ._asked import _Asked as _Asked
from ._failures import is_programming_error as is_programming_error
from ._failures import object_failure as object_failure
from ._sdk import BODY_READ_AHEAD_BYTES as BODY_READ_AHEAD_BYTES
from ._sdk import DEFAULT_CHUNK_BYTES as DEFAULT_CHUNK_BYTES
from ._sdk import _AsyncObjectBody as _AsyncObjectBody
from ._sdk import _S3Calls as _S3Calls
from ._sdk import _SyncObjectBody as _SyncObjectBody
from ._stream import s3_stream
from .pyreqwest import _FastGet as _FastGet
from .pyreqwest import _Signed as _Signed

__all__ = ["s3_stream"]
