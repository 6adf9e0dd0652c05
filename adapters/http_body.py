"""Reading a helpdesk response body safely: a cap on its decompressed size, and JSON of any nesting depth.

Why: a gzip body of 305 KB can expand to 300 MB (``httpx`` decompresses a whole network chunk at once and keeps
the whole body), and one record nested 5,000 levels deep makes the stdlib parser raise ``RecursionError`` for
the whole page. Neither is a page a working helpdesk sends, but neither may take the worker down with it.
"""

from __future__ import annotations

import io
import json
import re
import zlib
from typing import Any

import httpx

#: Containers deeper than this are replaced by a marker when the stdlib parser gives up on a page; the record
#: holding one is then quarantined by ``models.sanitize`` (its limit is far lower).
MAX_PARSE_DEPTH = 128
DEEP_MARKER = "<ticketlens: nested deeper than 128 levels, not parsed>"


class ResponseTooLargeError(Exception):
    """The decompressed body passed the configured cap; reading stopped there."""

    def __init__(self, limit: int, wire_bytes: int) -> None:
        super().__init__(f"body larger than {limit} bytes after decompression ({wire_bytes} bytes on the wire)")
        self.limit, self.wire_bytes = limit, wire_bytes


def read_capped(response: httpx.Response, max_bytes: int) -> httpx.Response:
    """Read a streamed response into a plain one, stopping as soon as the decoded body passes ``max_bytes``.

    gzip and deflate are inflated here with ``max_length``, so memory stays near the cap whatever the
    compression ratio; other encodings go through httpx's decoders chunk by chunk.
    """
    if response.is_stream_consumed:  # already read (e.g. by a mock transport): only the cap is left to check
        if len(response.content) > max_bytes:
            raise ResponseTooLargeError(max_bytes, int(response.headers.get("Content-Length") or 0))
        return response
    encoding = response.headers.get("Content-Encoding", "").strip().lower()
    out = bytearray()
    wire = 0

    def add(piece: bytes) -> None:
        out.extend(piece)
        if len(out) > max_bytes:
            raise ResponseTooLargeError(max_bytes, wire)

    if encoding in ("gzip", "x-gzip", "deflate"):
        inflater: Any = None
        for raw in response.iter_raw(chunk_size=65536):
            wire += len(raw)
            if inflater is None:
                # gzip or zlib header (auto-detected); a raw deflate stream (some servers) has neither.
                raw_deflate = encoding == "deflate" and (len(raw) < 2 or (raw[0] * 256 + raw[1]) % 31 != 0)
                inflater = zlib.decompressobj(-zlib.MAX_WBITS if raw_deflate else zlib.MAX_WBITS | 32)
            data = raw
            while data:
                try:
                    # At most 1 MiB per call: memory stays near the cap, not twice it.
                    add(inflater.decompress(data, min(2**20, max(1, max_bytes + 1 - len(out)))))
                except zlib.error as exc:
                    raise httpx.DecodingError(f"{encoding} body could not be decoded: {exc}") from None
                data = inflater.unconsumed_tail
        if inflater is not None:
            add(inflater.flush())
    elif encoding in ("", "identity"):
        for raw in response.iter_raw(chunk_size=65536):
            wire += len(raw)
            add(raw)
    else:
        for chunk in response.iter_bytes():
            wire += len(chunk)
            add(chunk)
    headers = [(k, v) for k, v in response.headers.multi_items()
               if k.lower() not in ("content-encoding", "content-length", "transfer-encoding")]
    return httpx.Response(response.status_code, headers=headers, content=bytes(out), request=response.request,
                          extensions=response.extensions)


def loads(content: bytes) -> Any:
    """``json.loads``, but a body nested too deep for the stdlib parser is still read (iteratively, with
    containers deeper than ``MAX_PARSE_DEPTH`` replaced by a marker) instead of raising ``RecursionError``."""
    try:
        return json.loads(content)
    except RecursionError:
        return _loads_iteratively(content)


# A JSON string (skipped as is) or a bare NaN / Infinity / -Infinity token, which the stdlib parser accepts and
# ijson does not: they become sentinel strings, turned back into floats while building.
_NON_FINITE = re.compile(r'"(?:[^"\\]|\\.)*"|(-?Infinity|NaN)')
_SENTINEL = "\x00ticketlens-non-finite:"
_FLOATS = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}


def _loads_iteratively(content: bytes) -> Any:
    import ijson

    text = content.decode("utf-8")
    if "NaN" in text or "Infinity" in text:
        text = _NON_FINITE.sub(lambda m: f'"\\u0000ticketlens-non-finite:{m.group(1)}"' if m.group(1)
                               else m.group(0), text)
        content = text.encode("utf-8", "surrogatepass")

    # The pure-Python backend: the C one refuses integers beyond 64 bits, which must reach the record screen.
    backend = ijson.get_backend("python")
    stack: list[Any] = []
    keys: list[Any] = []
    skipped = 0  # depth inside a container too deep to build
    root: Any = None
    done = False

    def put(value: Any) -> None:
        nonlocal root, done
        if not stack:
            root, done = value, True
        elif isinstance(stack[-1], dict):
            stack[-1][keys.pop()] = value
        else:
            stack[-1].append(value)

    try:
        for event, value in backend.basic_parse(io.BytesIO(content), use_float=True):
            if skipped:
                if event in ("start_map", "start_array"):
                    skipped += 1
                elif event in ("end_map", "end_array"):
                    skipped -= 1
                    if not skipped:
                        put(DEEP_MARKER)
                continue
            if event in ("start_map", "start_array"):
                if len(stack) >= MAX_PARSE_DEPTH:
                    skipped = 1
                    continue
                stack.append({} if event == "start_map" else [])
            elif event in ("end_map", "end_array"):
                put(stack.pop())
            elif event == "map_key":
                keys.append(value)
            elif isinstance(value, str) and value.startswith(_SENTINEL):
                put(_FLOATS.get(value[len(_SENTINEL):], value))
            else:
                put(value)
    except ijson.JSONError as exc:
        raise ValueError(f"invalid JSON: {exc}") from None
    if not done:
        raise ValueError("invalid JSON: the body ended early")
    return root
