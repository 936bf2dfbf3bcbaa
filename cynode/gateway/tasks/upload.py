"""Streaming multipart/form-data for task create (orchestrator.md §6.2, §6.7).

The body is parsed as it arrives with the push parser litestar itself uses (the `multipart` package): the `task`
part is kept in memory (JSON limit), each `attachment` part streams straight into the artifact store while it is
hashed. Limits are checked while streaming, so an oversized part stops the upload at once. The caller discards the
task's files when anything fails.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from multipart import MultipartSegment, ParserError, ParserLimitReached, PushMultipartParser

from cynode.errors import FieldError, Invalid, PayloadTooLarge
from cynode.gateway.artifacts import ArtifactStore, StoredFile, Upload

MiB = 1024 * 1024
MAX_ATTACHMENTS = 16
MAX_ATTACHMENT_BYTES = 10 * MiB
INLINE_TEXT_BYTES = 256 * 1024
MAX_FILENAME_BYTES = 255
_MEDIA_TYPE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}$")


@dataclass
class IncomingFile:
    name: str  # sanitized basename; the artifact path is upload/<name>
    content_type: str
    stored: StoredFile
    text: str | None  # the content when it is UTF-8 and at most 256 KiB (prompt mode inlines it)


@dataclass
class MultipartTask:
    task_json: bytes = b""
    files: list[IncomingFile] = field(default_factory=list)


def sanitize_filename(raw: str | None) -> str:
    """Keep the basename only: no directories, no `..`, no control characters, at most 255 bytes."""
    if raw is None:
        raise Invalid("attachment: each attachment part needs a filename",
                      [FieldError("attachment", "missing filename")])
    base = raw.replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(ch for ch in base if unicodedata.category(ch)[0] != "C").strip()
    if base in ("", ".", ".."):
        raise Invalid("attachment: the filename is empty once sanitized",
                      [FieldError("attachment", "invalid filename")])
    if len(base.encode()) > MAX_FILENAME_BYTES:
        raise Invalid("attachment: the filename exceeds 255 bytes", [FieldError("attachment", "filename too long")])
    return base


class _Part:
    def __init__(self, seg: MultipartSegment, store: ArtifactStore, task_id: str, max_json: int) -> None:
        self.name = seg.name
        self.max_json = max_json
        self.buf = bytearray()
        self.upload: Upload | None = None
        self.filename = ""
        ctype = (seg.content_type or "").lower()
        self.content_type = ctype if _MEDIA_TYPE.fullmatch(ctype) else "application/octet-stream"
        self.size = 0
        if self.name == "attachment":
            self.filename = sanitize_filename(seg.filename)
            self.upload = store.open_upload(task_id)
        elif self.name != "task":
            field_name = self.name or "(unnamed)"
            raise Invalid(f"{field_name}: unknown multipart part (expected task and attachment)",
                          [FieldError(field_name, "unknown field")])

    async def feed(self, data: bytes | bytearray) -> None:
        self.size += len(data)
        if self.upload is not None:
            if self.size > MAX_ATTACHMENT_BYTES:
                raise PayloadTooLarge(f"attachment {self.filename!r} exceeds 10 MiB")
            if self.size <= INLINE_TEXT_BYTES:
                self.buf.extend(data)
            await self.upload.write(bytes(data))
        else:
            if self.size > self.max_json:
                raise PayloadTooLarge("the task part exceeds the JSON body limit")
            self.buf.extend(data)

    async def finish(self) -> IncomingFile | None:
        if self.upload is None:
            return None
        stored = await self.upload.finish()
        text = None
        if self.size <= INLINE_TEXT_BYTES:
            try:
                text = bytes(self.buf).decode("utf-8")
            except UnicodeDecodeError:
                text = None
        return IncomingFile(self.filename, self.content_type, stored, text)

    def abort(self) -> None:
        if self.upload is not None:
            self.upload.abort()


async def read_multipart(stream: AsyncIterator[bytes], boundary: str, store: ArtifactStore, task_id: str, *,
                         max_json: int) -> MultipartTask:
    out = MultipartTask()
    seen_task = False
    names: set[str] = set()
    part: _Part | None = None
    try:
        with PushMultipartParser(boundary, max_segment_count=MAX_ATTACHMENTS + 2, max_header_count=16) as parser:
            async for chunk in stream:
                for event in parser.parse(chunk):
                    if isinstance(event, MultipartSegment):
                        part = _Part(event, store, task_id, max_json)
                        if part.name == "task":
                            if seen_task:
                                raise Invalid("task: more than one task part", [FieldError("task", "repeated")])
                            seen_task = True
                        elif len(out.files) >= MAX_ATTACHMENTS:
                            raise PayloadTooLarge(f"at most {MAX_ATTACHMENTS} attachments per task")
                    elif event is None:
                        assert part is not None
                        done = await part.finish()
                        if done is None:
                            out.task_json = bytes(part.buf)
                        else:
                            if done.name in names:
                                raise Invalid(f"attachment: duplicate name {done.name!r}",
                                              [FieldError("attachment", "duplicate name")])
                            names.add(done.name)
                            out.files.append(done)
                        part = None
                    else:
                        assert part is not None
                        await part.feed(event)
                if parser.closed:
                    break
    except ParserLimitReached:
        raise PayloadTooLarge(f"at most {MAX_ATTACHMENTS} attachments per task") from None
    except ParserError:
        raise Invalid("the multipart body is malformed", [FieldError("body", "malformed multipart")]) from None
    finally:
        if part is not None:
            part.abort()
    if not seen_task:
        raise Invalid("task: the multipart body needs a task part", [FieldError("task", "required")])
    return out
