"""Character-code conversion between CP932 (Shift_JIS as Windows writes it,
with NEC/IBM extensions such as ①, ㈱ and 髙) and UTF-8, validated: a file
that does not decode, or holds a character the target cannot represent, is
refused whole. Streams in chunks, so memory stays flat for any file size."""

from __future__ import annotations

import codecs
import os
from pathlib import Path

from .errors import ConversionError

CHUNK = 1 << 20
_CODECS = {"cp932-to-utf8": ("cp932", "utf-8"), "utf8-to-cp932": ("utf-8-sig", "cp932")}


def convert_file(source: Path, target: Path, conversion: str) -> None:
    """Write ``source`` converted to ``target``; raises ConversionError with
    the byte offset of the first problem."""
    source_codec, target_codec = _CODECS[conversion]
    decoder = codecs.getincrementaldecoder(source_codec)(errors="strict")
    encoder = codecs.getincrementalencoder(target_codec)(errors="strict")
    offset = 0
    with open(source, "rb") as src, open(target, "wb") as dst:
        while True:
            chunk = src.read(CHUNK)
            final = not chunk
            try:
                text = decoder.decode(chunk, final=final)
            except UnicodeDecodeError as exc:
                raise ConversionError(
                    f"{source_codec.upper()} として読めないバイト列があります（{offset + exc.start} バイト目付近）"
                ) from exc
            try:
                dst.write(encoder.encode(text, final=final))
            except UnicodeEncodeError as exc:
                raise ConversionError(
                    f"{target_codec.upper()} にない文字 {exc.object[exc.start : exc.end]!r} があります"
                    f"（{offset} バイト目以降）"
                ) from exc
            if final:
                break
            offset += len(chunk)


def converted(work: Path, conversion: str) -> Path:
    """The work file converted beside it (``.out``): written under ``.tmp``,
    validated whole, fsynced, renamed; a finished one is reused after a
    restart. :class:`ConversionError` when it does not convert."""
    out, partial = work.with_suffix(".out"), work.with_suffix(".tmp")
    if out.exists() and not partial.exists():
        return out
    partial.unlink(missing_ok=True)
    try:
        convert_file(work, partial, conversion)
    except ConversionError:
        partial.unlink(missing_ok=True)
        raise
    with open(partial, "rb") as fh:
        os.fsync(fh.fileno())
    os.rename(partial, out)
    return out
