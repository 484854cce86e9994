"""A ``multipart/form-data`` body read only as far as its ``model`` field, then relayed as it came.

An upload (audio to transcribe) names its model in a form field, and the provider must get its own
name for it there. ``FormHead`` reads the body's first chunks until that field's value is whole,
and ``rewritten`` gives those bytes with the new value; every later chunk passes unread. Parts
before the field (a client that sends the file first) are held until it comes, bounded by the
body's size limit; the parts are never decoded.

    head = FormHead(boundary_of(request.headers["content-type"]))
    await head.read(chunks)              # stops at the end of the model field's value
    first = head.rewritten("whisper-1")  # what was read, the value replaced; then the rest of chunks
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from providers.errors import InvalidRequest

__all__ = ["FormHead", "boundary_of"]

# Part headers longer than this are not a form a client library writes.
_MAX_HEADERS = 16 * 1024


def boundary_of(content_type: str) -> bytes:
    """The boundary of a ``multipart/form-data`` content type, or a 400 saying what to send."""
    kind, _, params = content_type.partition(";")
    if kind.strip().lower() == "multipart/form-data":
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.strip().lower() == "boundary":
                value = value.strip().strip('"')
                if 0 < len(value) <= 70:  # RFC 2046's limit
                    return value.encode("latin-1")
    raise InvalidRequest(
        "The request must be multipart/form-data with a boundary, holding the 'file' and 'model' fields.",
        code="invalid_content_type",
    )


def _names_model(headers: bytes) -> bool:
    """Whether a part's headers are those of the form field named ``model``."""
    for line in headers.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() != b"content-disposition":
            continue
        for param in value.split(b";")[1:]:
            key, _, given = param.strip().partition(b"=")
            if key.strip().lower() == b"name":
                return given.strip().strip(b'"') == b"model"
    return False


class FormHead:
    """The start of a multipart body, up to the end of its ``model`` field's value."""

    def __init__(self, boundary: bytes) -> None:
        self.first = b"--" + boundary
        self.delimiter = b"\r\n--" + boundary
        self.buffer = bytearray()
        self.model = ""
        self._part: int | None = None  # where the headers of the part being read start
        self._from = 0  # where the search for the delimiter ending that part resumes
        self._value = (0, 0)

    async def read(self, chunks: AsyncIterator[bytes]) -> None:
        """Consume ``chunks`` until the model field's value is whole (400 when there is none)."""
        async for chunk in chunks:
            self.buffer += chunk
            if self._scan():
                start, end = self._value
                self.model = bytes(self.buffer[start:end]).decode("utf-8", "replace")
                return
        raise self._missing()

    def rewritten(self, model: str) -> bytes:
        """What was read, with ``model`` as the field's value."""
        start, end = self._value
        return bytes(self.buffer[:start]) + model.encode() + bytes(self.buffer[end:])

    def _scan(self) -> bool:
        """Walk the parts read so far; resumable, so each byte is searched about once."""
        buffer = self.buffer
        if self._part is None:
            at = buffer.find(self.first, self._from)
            if at < 0:
                self._from = max(0, len(buffer) - len(self.first) + 1)
                return False
            self._part, self._from = at + len(self.first), 0
        while True:
            part = self._part
            if len(buffer) < part + 2:
                return False
            if buffer[part : part + 2] == b"--":  # the closing delimiter: no part left
                raise self._missing()
            if buffer[part : part + 2] != b"\r\n":
                raise InvalidRequest("The multipart body is malformed: a boundary is not followed by a line break.")
            headers_end = buffer.find(b"\r\n\r\n", part)
            if headers_end < 0:
                if len(buffer) - part > _MAX_HEADERS:
                    raise InvalidRequest("The multipart body is malformed: a part's headers never end.")
                return False
            start = headers_end + 4
            end = buffer.find(self.delimiter, max(start, self._from))
            if end < 0:
                self._from = max(start, len(buffer) - len(self.delimiter) + 1)
                return False
            self._from = 0
            if _names_model(bytes(buffer[part + 2 : headers_end])):
                self._value = (start, end)
                return True
            self._part = end + len(self.delimiter)

    @staticmethod
    def _missing() -> InvalidRequest:
        return InvalidRequest(
            "'model' is required: a form field such as model=openai/whisper-1.", param="model", code="missing_model"
        )
