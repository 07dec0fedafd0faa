"""The capture format: a versioned header line, then one JSON object per message.

See ``captures/README.md`` for the format. This module holds:

- ``CaptureWriter``: appends one line per record, flushing each line (``.jsonl``) or
  sync-flushing the deflate stream (``.jsonl.gz``), so a writer killed with SIGKILL
  loses at most the line in flight. Every record is scrubbed of secrets on write.
- ``open_capture`` / ``CaptureReader``: a streaming reader in constant memory. A corrupt
  or truncated line is collected as a ``CaptureProblem`` and skipped; a bad header is a
  ``CaptureError``.
- ``scrub_record`` and ``find_secrets``: secret removal and a scanner for leftovers.
- ``TraceRecorder``: stamps records with the run's one clock.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, is_dataclass
from datetime import datetime, timezone
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Iterator

from .clock import Clock, iso_ms

FORMAT = "valr-replay-capture"
VERSION = 1
SUPPORTED_VERSION = 1  # readers refuse a newer version than this
SOURCES = ("live", "proxy", "simulated")
DIRS = ("in", "out", "local")
REQUIRED_FIELDS = ("t", "conn", "dir", "kind", "type", "data")

SCRUBBED = "<scrubbed>"
SECRET_HEADERS = ("X-VALR-API-KEY", "X-VALR-SIGNATURE", "X-VALR-TIMESTAMP", "X-VALR-SUB-ACCOUNT-ID")
# In-band AUTHENTICATE payload fields.
SECRET_AUTH_FIELDS = ("apiKey", "signature")
# Account identifiers, scrubbed wherever they appear.
ACCOUNT_FIELDS = ("accountId", "subAccountId", "subaccountId")
# Amounts scrubbed with ``balances=True``.
BALANCE_FIELDS = (
    "available",
    "reserved",
    "total",
    "balance",
    "lendReserved",
    "borrowReserved",
    "borrowCollateralReserved",
    "borrowedAmount",
)

_HEADER_KEYS = {h.lower() for h in SECRET_HEADERS}
_FIELD_KEYS = {f.lower() for f in SECRET_AUTH_FIELDS + ACCOUNT_FIELDS}
_BALANCE_KEYS = {f.lower() for f in BALANCE_FIELDS}

_CHUNK = 64 * 1024
_GZIP_MAGIC = b"\x1f\x8b"


class CaptureError(Exception):
    """A capture cannot be used at all (missing file, bad header). Names the file."""

    def __init__(self, path: str | Path, message: str):
        self.path = str(path)
        self.message = message
        super().__init__(f"{path}: {message}")


@dataclass(frozen=True)
class CaptureProblem:
    """One unreadable line (or stream damage) in an otherwise readable capture."""

    path: str
    line_no: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line_no}: {self.message}"


# --------------------------------------------------------------------------- JSON


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Decimal):
        return str(obj)
    if isinstance(obj, Enum):
        return obj.value
    if is_dataclass(obj) and not isinstance(obj, type):
        return asdict(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj, key=str)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def dumps(obj: Any) -> str:
    return _encode(obj)


# json.dumps(obj, separators=(",", ":"), default=_json_default), the encoder built once (json.dumps
# builds one per call when given any option)
_encode = json.JSONEncoder(separators=(",", ":"), default=_json_default).encode


def now_iso() -> str:
    return iso_ms(int(datetime.now(timezone.utc).timestamp() * 1000))


# --------------------------------------------------------------------------- scrubbing


def scrubbed_names(*, balances: bool = False) -> list[str]:
    """The names a writer with these settings scrubs (the header's ``scrubbed`` list)."""
    names = list(SECRET_HEADERS) + list(SECRET_AUTH_FIELDS) + list(ACCOUNT_FIELDS)
    if balances:
        names += list(BALANCE_FIELDS)
    return names


def _plain(obj: Any) -> Any:
    """Dataclasses, enums, decimals and tuples turned into JSON-ready values (so scrubbing sees them)."""
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, Decimal):
        return str(obj)
    if is_dataclass(obj) and not isinstance(obj, type):
        return asdict(obj)
    return obj


# Text that may carry a secret: a secret's name, or a run of 64 hex characters (a key, a secret,
# half a signature). Strings without either are left as they are (the hot path).
_TEXT_HINT = re.compile(r"x-valr-|apikey|api_key|api-key|secret|signature|[0-9a-fA-F]{64}", re.IGNORECASE)
_TEXT_SECRETS = (
    # "X-VALR-SIGNATURE": "v" (a headers dict in JSON text)
    re.compile(r"""(["'](?:x-valr-api-key|x-valr-signature|x-valr-sub-account-id)["']\s*:\s*")((?:[^"\\]|\\.)*)""",
               re.IGNORECASE),
    # ["X-VALR-SIGNATURE", "v"] (a raw header list)
    re.compile(r"""(\[\s*"(?:x-valr-api-key|x-valr-signature|x-valr-sub-account-id)"\s*,\s*")((?:[^"\\]|\\.)*)""",
               re.IGNORECASE),
    # "apiKey": "v" / "signature": "v" (an AUTHENTICATE payload), closed or not (a cut-off frame)
    re.compile(r"""("(?:apiKey|signature|apiSecret|secret)"\s*:\s*")((?:[^"\\]|\\.)*)""", re.IGNORECASE),
    # X-VALR-SIGNATURE: v (raw HTTP header lines)
    re.compile(r"""((?:^|[\s{,;])x-valr-(?:api-key|signature|sub-account-id)\s*[:=]\s*)([^\s"',;}]+)""",
               re.IGNORECASE),
)


def scrub_text(text: str, known: Iterable[str] = ()) -> str:
    """``text`` (a raw frame or body that did not parse) with every secret it may hold replaced:
    known key and secret values, the values of secret-named fields and headers in any spelling
    (JSON, cut-off JSON, HTTP header lines), 64-hex values after a key/secret/signature name,
    and any 128-hex value (an HMAC-SHA512 signature)."""
    for value in known:
        if value and value in text:
            text = text.replace(value, SCRUBBED)
    if not _TEXT_HINT.search(text):
        return text
    for pattern in _TEXT_SECRETS:
        text = pattern.sub(lambda m: m.group(1) + (SCRUBBED if m.group(2) else ""), text)
    text = _NAMED_HEX64.sub(lambda m: m.group(0).replace(m.group(1), SCRUBBED), text)
    return _HEX128.sub(SCRUBBED, text)


def _scrub(obj: Any, balances: bool, key: str | None = None) -> Any:
    obj = _plain(obj)
    if isinstance(obj, str):
        return scrub_text(obj)
    if isinstance(obj, dict):
        out: dict[Any, Any] = {}
        for k, v in obj.items():
            lk = k.lower() if isinstance(k, str) else k
            if lk in _HEADER_KEYS or lk in _FIELD_KEYS:
                out[k] = SCRUBBED if v is not None else None
            elif balances and lk in _BALANCE_KEYS and not isinstance(_plain(v), (dict, list, tuple)):
                out[k] = SCRUBBED if v is not None else None
            else:
                out[k] = _scrub(v, balances, lk if isinstance(lk, str) else None)
        return out
    if isinstance(obj, (list, tuple)):
        if key == "headers":
            # headers as a list of [name, value] pairs (raw header lists)
            items = []
            for item in obj:
                item = _plain(item)
                if (
                    isinstance(item, (list, tuple))
                    and len(item) == 2
                    and isinstance(item[0], str)
                    and item[0].lower() in _HEADER_KEYS
                ):
                    items.append([item[0], SCRUBBED])
                else:
                    items.append(_scrub(item, balances))
            return items
        return [_scrub(v, balances) for v in obj]
    return obj


def scrub_record(record: dict[str, Any], *, balances: bool = False) -> dict[str, Any]:
    """A copy of ``record`` with secrets replaced by ``"<scrubbed>"``.

    Scrubbed, case-insensitively, at any depth: the X-VALR-API-KEY / -SIGNATURE /
    -TIMESTAMP / -SUB-ACCOUNT-ID headers (in a ``headers`` dict or a list of pairs), the
    AUTHENTICATE payload's ``apiKey`` and ``signature``, and ``accountId`` /
    ``subAccountId`` / ``subaccountId``. With ``balances=True`` also the amounts
    ``available``, ``reserved``, ``total``, ``balance`` (and VALR's lend/borrow amounts).
    The input is not modified; dataclasses, enums and decimals come out as plain JSON values.
    """
    return _scrub(record, balances)


# Value shapes of real secrets: VALR API keys and secrets are 64 hex characters, an
# HMAC-SHA512 signature is 128 hex characters.
_HEX128 = re.compile(r"(?<![0-9a-fA-F])[0-9a-fA-F]{128}(?![0-9a-fA-F])")
_KEY_NAME = r"(?:x-valr-api-key|x-valr-signature|x-valr-sub-account-id|api[-_ ]?key|api[-_ ]?secret|secret|signature)"
_NAMED_HEX64 = re.compile(
    _KEY_NAME + r"""["']?\s*[:=,]\s*["']?([0-9a-fA-F]{64})(?![0-9a-fA-F])""",
    re.IGNORECASE,
)
_SECRET_HEADER_VALUE = re.compile(  # "name": "value" (a headers dict)
    r"""["'](x-valr-api-key|x-valr-signature|x-valr-sub-account-id)["']\s*:\s*"((?:[^"\\]|\\.)*)\"""",
    re.IGNORECASE,
)
_SECRET_HEADER_PAIR = re.compile(  # ["name", "value"] (a raw header list)
    r"""\[\s*"(x-valr-api-key|x-valr-signature|x-valr-sub-account-id)"\s*,\s*"((?:[^"\\]|\\.)*)"\s*\]""",
    re.IGNORECASE,
)
_AUTH_FIELD_VALUE = re.compile(r""""(apiKey|signature)"\s*:\s*"((?:[^"\\]|\\.)*)\"""")
# the same inside a JSON string (a raw frame kept as text): \"apiKey\": \"value
_ESCAPED_AUTH_FIELD_VALUE = re.compile(r"""\\"(apiKey|signature)\\"\s*:\s*\\"([^"\\]*)""")


def _scan_line(line: str) -> list[str]:
    found: list[str] = []
    for m in [*_SECRET_HEADER_VALUE.finditer(line), *_SECRET_HEADER_PAIR.finditer(line)]:
        # a value that is itself a header name is a list of names (the header's `scrubbed`)
        if m.group(2) != SCRUBBED and m.group(2).lower() not in _HEADER_KEYS:
            found.append(f"unscrubbed {m.group(1)} header value")
    for m in [*_AUTH_FIELD_VALUE.finditer(line), *_ESCAPED_AUTH_FIELD_VALUE.finditer(line)]:
        if m.group(2) not in (SCRUBBED, ""):
            found.append(f"unscrubbed {m.group(1)} field value")
    if not found:
        for m in _NAMED_HEX64.finditer(line):
            found.append(f"64-hex secret value after {m.group(0)[:24]!r}")
    for _ in _HEX128.finditer(line):
        found.append("128-hex value (an HMAC-SHA512 signature?)")
    return found


def _text_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Lines of a text or gzip file, decoded leniently, for scanning."""
    with open(path, "rb") as fh:
        gz = fh.read(2) == _GZIP_MAGIC
        fh.seek(0)
        chunks = _gunzip_chunks(fh, None) if gz else iter(lambda: fh.read(_CHUNK), b"")
        for line_no, raw, _complete in _split_lines(chunks):
            yield line_no, raw.decode("utf-8", errors="replace")


def find_secrets(path: str | Path) -> list[str]:
    """Unscrubbed secrets in one file (plain text or gzip), as ``"path:line: what"`` strings.

    Looks for secret headers and AUTHENTICATE fields whose value is not ``<scrubbed>``,
    a 64-hex value next to a key/secret/signature name, and any 128-hex value.
    """
    p = Path(path)
    out: list[str] = []
    try:
        for line_no, line in _text_lines(p):
            for what in _scan_line(line):
                out.append(f"{p}:{line_no}: {what}")
    except (OSError, zlib.error) as exc:
        out.append(f"{p}: could not be scanned: {exc}")
    return out


# --------------------------------------------------------------------------- writer


class CaptureWriter:
    """Appends one line per record and flushes each line; scrubs every record on write.

    ``.jsonl.gz`` (any ``.gz`` suffix) is written gzip-compressed with a sync flush after
    each line, so the file decompresses up to the last whole line if the writer dies.
    """

    def __init__(
        self,
        path: str | Path,
        header: dict[str, Any],
        *,
        scrub_balances: bool = False,
        known_secrets: Iterable[str] = (),
        _append: bool = False,
    ):
        self.path = Path(path)
        self.scrub_balances = scrub_balances
        #: API keys and secrets the writer knows (the fake server's accounts): replaced wherever they occur
        self.known_secrets = tuple(sorted({k for k in known_secrets if k and len(k) >= 8}, key=len, reverse=True))
        self._secret_names = tuple(n.lower() for n in scrubbed_names(balances=scrub_balances))
        self.gzip = self.path.suffix == ".gz"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh: IO[bytes] | None = open(self.path, "ab" if _append else "wb")
        self._z = zlib.compressobj(6, zlib.DEFLATED, 31) if self.gzip else None
        if _append:
            self.header = dict(header)
        else:
            self.header = make_header(**header)
            names = scrubbed_names(balances=scrub_balances)
            for n in self.header.get("scrubbed") or []:
                if n not in names:
                    names.append(n)
            self.header["scrubbed"] = names
            self._write_line(dumps(self.header))

    @classmethod
    def open_append(cls, path: str | Path) -> "CaptureWriter":
        """Continue an existing capture. Its header is kept (and decides balance scrubbing).

        A plain file whose last line was cut off gets a newline first (the cut line then
        reads as one problem). A gzip file is continued as a new gzip member; a damaged
        gzip file is refused with ``CaptureError``.
        """
        p = Path(path)
        reader = open_capture(p)
        header = reader.header
        scrub_balances = "available" in (header.get("scrubbed") or [])
        if reader.gzip:
            for _ in reader:
                pass
            if any("gzip" in pr.message for pr in reader.problems):
                raise CaptureError(p, "damaged gzip stream; cannot append (copy the readable records to a new file)")
        else:
            with open(p, "rb") as fh:
                fh.seek(0, 2)
                if fh.tell() > 0:
                    fh.seek(-1, 2)
                    needs_newline = fh.read(1) != b"\n"
                else:
                    needs_newline = False
            if needs_newline:
                with open(p, "ab") as fh:
                    fh.write(b"\n")
        return cls(p, header, scrub_balances=scrub_balances, _append=True)

    def _write_line(self, line: str) -> None:
        if self._fh is None:
            raise ValueError(f"{self.path}: capture already closed")
        data = (line + "\n").encode("utf-8")
        if self._z is not None:
            self._fh.write(self._z.compress(data) + self._z.flush(zlib.Z_SYNC_FLUSH))
        else:
            self._fh.write(data)
        self._fh.flush()

    def write(self, record: dict[str, Any]) -> None:
        """Scrub and append one record (flushed).

        The scrubber only replaces values under the names ``scrubbed_names()`` lists, so
        when none of them occurs anywhere in the serialised record (case-insensitively)
        the record is written as it is: the same bytes without the scrubber's deep copy,
        which matters on the hot path (a book update is hundreds of small dicts).
        """
        try:
            line = dumps(record)
        except (TypeError, ValueError):
            line = None
        if line is not None:
            low = line.lower()
            if not any(name in low for name in self._secret_names) and not _TEXT_HINT.search(line):
                self._write_line(self._known_out(line))
                return
        self._write_line(self._known_out(dumps(scrub_record(record, balances=self.scrub_balances))))

    def _known_out(self, line: str) -> str:
        for value in self.known_secrets:
            if value in line:
                line = line.replace(value, SCRUBBED)
        return line

    @property
    def closed(self) -> bool:
        return self._fh is None

    def close(self) -> None:
        if self._fh is not None:
            try:
                if self._z is not None:
                    self._fh.write(self._z.flush(zlib.Z_FINISH))
            finally:
                self._fh.close()
                self._fh = None

    def __enter__(self) -> "CaptureWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def make_header(
    source: str = "simulated",
    *,
    venue: str = "valr",
    upstream: str | None = None,
    pairs: list[str] | tuple[str, ...] = (),
    scrubbed: list[str] | None = None,
    created_at: str | None = None,
    format: str = FORMAT,
    version: int = VERSION,
    **extra: Any,
) -> dict[str, Any]:
    """A complete header; ``created_at`` defaults to now. Extra fields are kept."""
    if format != FORMAT:
        raise ValueError(f"header field 'format' must be {FORMAT!r}, got {format!r}")
    if source not in SOURCES:
        raise ValueError(f"header field 'source' must be one of {', '.join(SOURCES)}; got {source!r}")
    return {
        "format": FORMAT,
        "version": version,
        "created_at": created_at or now_iso(),
        "source": source,
        "venue": venue,
        "upstream": upstream,
        "pairs": list(pairs),
        "scrubbed": list(scrubbed or []),
        **extra,
    }


# --------------------------------------------------------------------------- reader


def _gunzip_chunks(fh: IO[bytes], on_damage: Callable[[str], None] | None) -> Iterator[bytes]:
    """Decompressed chunks of a (possibly multi-member, possibly truncated) gzip stream.

    Output per step is bounded, so memory stays constant however well the data compresses.
    Damage ends the stream and is reported once through ``on_damage``.
    """
    d = zlib.decompressobj(31)
    fed = False
    while True:
        pending = fh.read(_CHUNK)
        if not pending:
            break
        more = True
        while pending or more:
            saved = d.copy()
            try:
                out = d.decompress(pending, _CHUNK * 4)
            except zlib.error as exc:
                # zlib drops the output of a failing call: replay this input in small
                # pieces from the saved state to salvage everything before the damage
                d = saved
                for i in range(0, len(pending), 256):
                    piece = pending[i : i + 256]
                    saved = d.copy()
                    try:
                        out = d.decompress(piece)
                    except zlib.error:
                        d = saved  # byte by byte through the failing piece
                        for j in range(len(piece)):
                            try:
                                out = d.decompress(piece[j : j + 1])
                            except zlib.error:
                                break
                            if out:
                                yield out
                        break
                    if out:
                        yield out
                if on_damage:
                    on_damage(f"corrupt gzip data ({exc}); the rest of the file is unreadable")
                return
            fed = True
            more = len(out) == _CHUNK * 4
            pending = d.unconsumed_tail
            if out:
                yield out
            if d.eof:
                pending = d.unused_data + pending
                d = zlib.decompressobj(31)
                fed = False
                more = False
                if pending.strip(b"\x00") == b"":
                    pending = b""  # trailing padding
    if fed and not d.eof and on_damage:
        on_damage("gzip stream truncated (writer killed?); read up to the damage")


def _split_lines(chunks: Iterator[bytes]) -> Iterator[tuple[int, bytes, bool]]:
    """(line_no, line without newline, ended_with_newline) from a stream of chunks."""
    buf = b""
    line_no = 0
    for chunk in chunks:
        buf += chunk
        if b"\n" not in chunk:
            continue
        *lines, buf = buf.split(b"\n")
        for raw in lines:
            line_no += 1
            yield line_no, raw, True
    if buf:
        yield line_no + 1, buf, False


def _split_lines_at(chunks: Iterator[bytes]) -> Iterator[tuple[int, int, bytes, bool]]:
    """(line_no, offset, line without newline, ended_with_newline) from a stream of chunks."""
    buf = b""
    line_no = 0
    pos = 0  # offset of buf[0] in the stream
    for chunk in chunks:
        buf += chunk
        if b"\n" not in chunk:
            continue
        *lines, buf = buf.split(b"\n")
        for raw in lines:
            line_no += 1
            yield line_no, pos, raw, True
            pos += len(raw) + 1
    if buf:
        yield line_no + 1, pos, buf, False


#: lines iter_located may note as needing full parsing before iter_raw checks every line
_MAX_ODD = 10_000


def validate_record(obj: Any) -> str | None:
    """Why ``obj`` is not a valid record, or None."""
    if not isinstance(obj, dict):
        return f"record is a JSON {type(obj).__name__}, not an object"
    for name in REQUIRED_FIELDS:
        if name not in obj:
            return f"missing required field {name!r}"
    t = obj["t"]
    if isinstance(t, bool) or not isinstance(t, (int, float)):
        return f"field 't' must be a number (ns since start), got {t!r}"
    for name in ("conn", "kind", "type"):
        if not isinstance(obj[name], str):
            return f"field {name!r} must be a string, got {obj[name]!r}"
    if obj["dir"] not in DIRS:
        return f"field 'dir' must be one of {', '.join(DIRS)}, got {obj['dir']!r}"
    return None


def validate_header(path: str | Path, obj: Any) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise CaptureError(path, "line 1: header is not a JSON object")
    if obj.get("format") != FORMAT:
        raise CaptureError(path, f"line 1: header field 'format' is {obj.get('format')!r}, expected {FORMAT!r}")
    version = obj.get("version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise CaptureError(path, f"line 1: header field 'version' must be an integer, got {version!r}")
    if version > SUPPORTED_VERSION:
        raise CaptureError(
            path, f"line 1: capture format version {version} is newer than this reader supports ({SUPPORTED_VERSION})"
        )
    if "source" in obj and obj["source"] not in SOURCES:
        raise CaptureError(
            path, f"line 1: header field 'source' must be one of {', '.join(SOURCES)}, got {obj['source']!r}"
        )
    return obj


_DATA_KEY = b',"data":'
# A JSON string without escapes or control characters, and a JSON integer.
_S = rb'"([^"\\\x00-\x1f]*)"'
_WRITER_HEAD = re.compile(
    rb'\{"t":(-?(?:0|[1-9][0-9]*)),(?:"wall":' + _S + rb',)?"conn":' + _S + rb',"dir":' + _S
    + rb',"kind":' + _S + rb',"type":' + _S + rb',"data":'
)


class RawFrame(Mapping):
    """A recorded frame's JSON text, sent as it is (never parsed and re-serialised).

    ``text`` is the frame (the capture line's ``data``, as the writer wrote it), ``msg_type``
    the record's ``type``. It reads as the parsed JSON (a read-only mapping), parsed lazily on
    first use and cached: ``value``. Immutable, so copies are the frame itself.
    """

    __slots__ = ("text", "msg_type", "_value")

    def __init__(self, text: str, msg_type: str = ""):
        self.text = text
        self.msg_type = msg_type
        self._value: Any = _UNSET

    @property
    def value(self) -> Any:
        """The frame parsed (``json.loads(text)``), cached."""
        if self._value is _UNSET:
            self._value = json.loads(self.text)
        return self._value

    def _mapping(self) -> dict[str, Any]:
        v = self.value
        return v if isinstance(v, dict) else {}

    def __getitem__(self, key: str) -> Any:
        return self._mapping()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._mapping())

    def __len__(self) -> int:
        return len(self._mapping())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, RawFrame):
            return self.text == other.text or self.value == other.value
        return self.value == other

    __hash__ = None  # type: ignore[assignment]

    def __copy__(self) -> "RawFrame":
        return self

    def __deepcopy__(self, memo: Any) -> "RawFrame":
        return self

    def __repr__(self) -> str:
        short = self.text if len(self.text) <= 80 else self.text[:77] + "..."
        return f"RawFrame({short!r}, {self.msg_type!r})"


_UNSET: Any = object()


def split_line(raw: bytes) -> tuple[dict[str, Any], bytes] | None:
    """A line in the writer's layout split into (record with ``data`` None, ``data``'s JSON
    bytes), parsing only the head; None when the layout is not the writer's (or the head is
    not a valid record).

    The writer puts ``data`` last and the other fields are scalars, so the first
    ``,"data":`` is the top-level key when the head holds no ``{``/``[`` besides its opening
    brace (a quote before ``data`` that follows a comma cannot be inside a string). This does
    NOT check that the tail is one JSON value (a hand-added key after ``data`` would end up in
    it): callers check that with ``json.loads(tail)`` or know it from an earlier pass.
    """
    if not raw.endswith(b"}"):
        return None
    m = _WRITER_HEAD.match(raw)
    if m is not None:  # the writer's exact head: no JSON parsing needed
        try:
            t, wall, conn, dir_, kind, typ = (g.decode("utf-8") if g is not None else None for g in m.groups())
        except UnicodeDecodeError:
            return None
        head: dict[str, Any] = {"t": int(t)}  # type: ignore[arg-type]
        if wall is not None:
            head["wall"] = wall
        head.update(conn=conn, dir=dir_, kind=kind, type=typ, data=None)
        if dir_ not in DIRS:
            return None
        return head, raw[m.end() : -1]
    i = raw.find(_DATA_KEY)
    if i <= 0 or raw[:1] != b"{":
        return None
    prefix = raw[:i]
    if prefix.count(b"{") != 1 or b"[" in prefix:
        return None
    try:
        obj = json.loads(prefix + b"}")
    except ValueError:  # JSONDecodeError and UnicodeDecodeError
        return None
    if not isinstance(obj, dict) or "data" in obj:
        return None
    obj["data"] = None
    if validate_record(obj) is not None:
        return None
    return obj, raw[i + len(_DATA_KEY) : -1]


def _fingerprint(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ino)


class CaptureReader:
    """A capture read as a stream: ``.header`` (validated on open), iteration yields records.

    Each iteration re-reads the file from the start (so a reader can be iterated more
    than once) and restarts ``.problems``. Unreadable lines become ``CaptureProblem``s
    (also passed to ``on_problem``) and are skipped.
    """

    def __init__(self, path: str | Path, on_problem: Callable[[CaptureProblem], None] | None = None):
        self.path = Path(path)
        self.on_problem = on_problem
        self.problems: list[CaptureProblem] = []
        self.line_no = 0  # line of the record last yielded
        #: set by iter_located: (file fingerprint, offsets of lines iter_raw must parse in full)
        self.slice_check: tuple[Any, set[int] | None] | None = None
        if not self.path.exists():
            raise CaptureError(self.path, "no such file")
        if self.path.is_dir():
            raise CaptureError(self.path, "is a directory, not a capture file")
        try:
            with open(self.path, "rb") as fh:
                self.gzip = fh.read(2) == _GZIP_MAGIC
        except OSError as exc:
            raise CaptureError(self.path, f"cannot open: {exc.strerror or exc}") from exc
        self.header = self._read_header()

    def _lines(self, fh: IO[bytes], damage: list[str]) -> Iterator[tuple[int, bytes, bool]]:
        if self.gzip:
            chunks = _gunzip_chunks(fh, damage.append)
        else:
            chunks = iter(lambda: fh.read(_CHUNK), b"")
        return _split_lines(chunks)

    def _read_header(self) -> dict[str, Any]:
        damage: list[str] = []
        with open(self.path, "rb") as fh:
            lines = self._lines(fh, damage)
            first = next(lines, None)
            lines.close()  # type: ignore[attr-defined]
        if first is None:
            why = damage[0] if damage else "empty file"
            raise CaptureError(self.path, f"line 1: no header ({why})")
        try:
            obj = json.loads(first[1].decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CaptureError(self.path, f"line 1: header is not valid JSON ({exc})") from None
        return validate_header(self.path, obj)

    def _problem(self, line_no: int, message: str) -> None:
        pr = CaptureProblem(str(self.path), line_no, message)
        self.problems.append(pr)
        if self.on_problem is not None:
            self.on_problem(pr)

    def _raw_lines(self) -> Iterator[tuple[int, int, bytes, bool]]:
        """(line_no, offset, line, complete) of every non-blank record line (the header
        skipped); ``offset`` is the line's byte offset in the (decompressed) stream. Restarts
        ``.problems``; reports stream damage at the end."""
        self.problems = []
        damage: list[str] = []
        last = 1
        with open(self.path, "rb") as fh:
            for line_no, offset, raw, complete in _split_lines_at(self._chunks(fh, damage)):
                last = line_no
                if line_no == 1:
                    continue
                if not raw.strip():
                    continue
                if not complete and self.gzip and damage:
                    # the line in flight when the stream broke; reported with the damage below
                    last = line_no - 1
                    break
                yield line_no, offset, raw, complete
        for message in damage:
            self._problem(last + 1, message)

    def _chunks(self, fh: IO[bytes], damage: list[str]) -> Iterator[bytes]:
        if self.gzip:
            return _gunzip_chunks(fh, damage.append)
        return iter(lambda: fh.read(_CHUNK), b"")

    def _parse(self, line_no: int, raw: bytes, complete: bool) -> dict[str, Any] | None:
        """One line parsed in full and validated, or None (a problem is reported)."""
        try:
            obj = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            self._problem(line_no, f"not UTF-8 ({exc.reason} at byte {exc.start})")
            return None
        except json.JSONDecodeError as exc:
            what = "truncated last line" if not complete else "corrupt line"
            self._problem(line_no, f"{what}: invalid JSON ({exc.msg} at column {exc.colno})")
            return None
        why = validate_record(obj)
        if why is not None:
            self._problem(line_no, why)
            return None
        return obj

    def iter_with_lines(self) -> Iterator[tuple[int, dict[str, Any]]]:
        """(line_no, record) pairs; line 1 is the header."""
        for line_no, _offset, raw, complete in self._raw_lines():
            obj = self._parse(line_no, raw, complete)
            if obj is not None:
                self.line_no = line_no
                yield line_no, obj

    def iter_located(
        self, skip: Callable[[dict[str, Any]], bool] | None = None
    ) -> Iterator[tuple[int, bytes, dict[str, Any]]]:
        """(offset, line, record) for every record (offset: the line's byte offset in the
        file, or in the decompressed stream of a gzip capture; ``line`` without newline).

        ``skip(record)`` (called with ``data`` None) drops records by their other fields: a
        dropped line in the writer's layout is not parsed beyond its head, but its ``data``
        is checked to be one JSON value (``json.loads``), so that a later :meth:`iter_raw`
        may send it as it is. A dropped line that fails that is parsed in full (problems are
        reported as by ``iter``) and its offset noted: ``slice_check`` afterwards is
        ``(file fingerprint, offsets that need full parsing)`` for :meth:`iter_raw`.
        """
        fingerprint = _fingerprint(self.path)
        odd: set[int] | None = set()
        for line_no, offset, raw, complete in self._raw_lines():
            split = split_line(raw) if skip is not None else None
            if split is not None and skip(split[0]):  # type: ignore[misc]
                try:
                    json.loads(split[1])
                    continue
                except ValueError:  # sliced wrong (a key after data?) or not JSON
                    if odd is not None:
                        odd.add(offset)
                        if len(odd) > _MAX_ODD:
                            odd = None  # too many: iter_raw then checks every line itself
            obj = self._parse(line_no, raw, complete)
            if obj is None:
                continue
            if skip is not None:
                head = dict(obj)
                head["data"] = None
                if skip(head):
                    continue
            self.line_no = line_no
            yield offset, raw, obj
        self.slice_check = (fingerprint, odd)

    def iter_raw(
        self, select: Callable[[dict[str, Any]], bool],
        slice_check: tuple[Any, set[int] | None] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """The records whose fields other than ``data`` satisfy ``select``, with ``data`` a
        :class:`RawFrame` (the recorded text, not parsed) where the line is in the writer's
        layout, else parsed in full (hand-edited lines: keys reordered, a key after ``data``,
        other spacing). Other lines are skipped unparsed where possible.

        Whether ``data`` is one JSON value is checked per line (``json.loads``) unless
        ``slice_check`` (from :meth:`iter_located` on this file) says so and the file has not
        changed since.
        """
        trusted: set[int] | None = None
        if slice_check is not None and slice_check[1] is not None and slice_check[0] == _fingerprint(self.path):
            trusted = slice_check[1]
        for line_no, offset, raw, complete in self._raw_lines():
            split = split_line(raw)
            if split is not None:
                head, tail = split
                if not select(head):
                    continue
                ok = trusted is not None and offset not in trusted
                if not ok:
                    try:
                        json.loads(tail)
                        ok = True
                    except ValueError:
                        ok = False
                if ok:
                    try:
                        text = tail.decode("utf-8")
                    except UnicodeDecodeError:
                        text = None
                    if text is not None:
                        head["data"] = RawFrame(text, head["type"])
                        self.line_no = line_no
                        yield head
                        continue
            obj = self._parse(line_no, raw, complete)
            if obj is None:
                continue
            head = dict(obj)
            head["data"] = None
            if select(head):
                self.line_no = line_no
                yield obj

    def read_at(self, offset: int, length: int) -> dict[str, Any]:
        """The record of the line at ``offset`` (``length`` bytes, from :meth:`iter_located`)
        of a plain capture. CaptureError if it is not a record (the file changed?)."""
        if self.gzip:
            raise CaptureError(self.path, "read_at: not possible in a gzip capture "
                                          "(offsets are in the decompressed stream)")
        with open(self.path, "rb") as fh:
            fh.seek(offset)
            raw = fh.read(length)
        try:
            obj = json.loads(raw)
        except ValueError as exc:
            raise CaptureError(self.path, f"byte {offset}: no record there any more (file changed?): {exc}") from None
        why = validate_record(obj)
        if why is not None:
            raise CaptureError(self.path, f"byte {offset}: {why} (file changed?)")
        return obj

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for _line_no, rec in self.iter_with_lines():
            yield rec

    def __enter__(self) -> "CaptureReader":
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def open_capture(
    path: str | Path, on_problem: Callable[[CaptureProblem], None] | None = None
) -> CaptureReader:
    """Open a capture (plain or gzip, detected by content) and validate its header."""
    return CaptureReader(path, on_problem)


def read_capture(path: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]], list[CaptureProblem]]:
    """The whole capture in memory: (header, records, problems)."""
    reader = open_capture(path)
    records = list(reader)
    return reader.header, records, list(reader.problems)


# --------------------------------------------------------------------------- trace


@dataclass
class TraceRecorder:
    """Stamps records with one clock and hands them to a writer and/or keeps them in memory.

    ``record(conn, dir, kind, type, data)``: ``dir`` is ``in`` (server to client),
    ``out`` (client to server) or ``local`` (a state change, not a message).
    """

    clock: Clock
    writer: CaptureWriter | None = None
    keep: bool = True
    records: list[dict[str, Any]] = field(default_factory=list)
    listeners: list[Callable[[dict[str, Any]], None]] = field(default_factory=list)

    def record(self, conn: str, dir: str, kind: str, type: str, data: Any) -> dict[str, Any]:
        t, wall = self.clock.stamp()
        rec = {
            "t": t,
            "wall": wall,
            "conn": conn,
            "dir": dir,
            "kind": kind,
            "type": type,
            "data": data,
        }
        if self.keep:
            self.records.append(rec)
        if self.writer is not None:
            self.writer.write(rec)
        for listener in self.listeners:
            listener(rec)
        return rec

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
