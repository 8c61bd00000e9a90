"""The API contract as JSON Schemas, for the conformance suite (tests/test_conformance.py).

Built at test time from the two documents of the contract:

- ``openrpc.json`` (the upstream OpenRPC 1.2.6 description of API 1.0.0): every method's
  result schema, ``$ref``s inlined;
- ``api.md`` (the specification, which wins where the two disagree, api.md preamble):
  §3.7's result rules turn every object strict (``additionalProperties: false``, every listed
  field required unless its table says optional) and every status enum into the one value
  this server sends; ``OVERLAYS`` below applies the per-method refinements and
  disagreements, each with the section that demands it. Topic-event field lists (§5.4), the
  role table (§2.6), result tables (§4), error lists (§4) and the error catalog (§6) are
  parsed from api.md itself, so the suite follows the document rather than a copy of it.

Where the files are: ``$CAMERA_SERVICE_OPENRPC`` / ``$CAMERA_SERVICE_API_MD`` when set, else
``../shared/reference/openrpc.json`` and ``../shared/spec/api.md`` relative to the repository
root (the lookup style of ``camera_service.testing.fake_mediamtx.default_openapi_path``).

openrpc.json vs api.md disagreements found while building this (api.md wins; each one is
also an entry of ``OVERLAYS`` with kind "disagreement", and ``DISAGREEMENTS`` is checked
against the OpenRPC file by a test so that the list stays true):

 1. Parameters are never marked required in OpenRPC (api.md's params tables say which are).
 2. ``limit`` minimum 0 (OpenRPC ``Pagination``) vs 1 (api.md §3.3).
 3. ``Streams.hls`` / ``Streams.webrtc`` illustrative forms vs the §3.4 forms.
 4. ``get_system_status``: OpenRPC ``StatusResult`` (HEALTHY/...) vs the readiness object (§4.22).
 5. ``get_camera_capabilities``: no ``frame_rates`` in OpenRPC; api.md §4.5 has the alias.
 6. ``get_server_info``: ``go_version`` vs ``python_version`` (§4.23).
 7. ``get_metrics.system_metrics``: ``goroutines`` vs ``threads`` (§4.20).
 8. Status enums with ``FAILED``/``ERROR`` are allowed in OpenRPC results; api.md §3.7: never sent.
 9. ``error.message`` of -32010 "Not Found" vs resource-specific messages (§6.2).
    -- the nine above are api.md's own table of known differences; the rest are not in it --
10. ``get_camera_status``: OpenRPC's result is the plain ``Camera`` schema; api.md §4.4 adds
    ``metrics`` (always present) and ``capabilities`` (optional).
11. ``stop_streaming``: OpenRPC ``StreamStop`` has no ``message``; api.md §4.16 has an
    optional ``message``.
12. ``stop_recording.status``: OpenRPC enum ``[STOPPED, FAILED]``; api.md §3.7's table lists
    ``STOPPED, STARTING, STOPPING, PAUSED, ERROR, FAILED`` (both: this server sends STOPPED).
13. ``required`` lists: OpenRPC requires only a few fields per result (``get_recording_info``
    only ``filename``; ``ServerInfo``, ``StorageInfo``, ``SubscriptionStats``, ``MetricsResult``,
    the external-stream results have no ``required`` at all); api.md §3.7: every listed field
    is present unless its table marks it optional.
14. Error messages: OpenRPC's ``components.errors`` say "Method Not Found", "Invalid Params",
    "Internal Error", "Auth Failed", "Permission Denied", "Invalid State", "Rate Limited",
    "Dependency Failed"; api.md §6.2 says "Method not found", "Invalid parameters",
    "Internal server error", "Authentication required" / "Authentication failed or token
    expired", "Permission denied", "Invalid state", "Rate limited", "Dependency failed".
    OpenRPC has no -32700 at all.
15. ``start_recording.duration`` is ``number`` in OpenRPC, an integer 1-86400 in api.md §4.7.
16. ``start_recording``/``stop_recording`` result ``format`` enum includes ``mkv`` in OpenRPC;
    api.md §4.7 rejects mkv with -32030, so a result never carries it.
17. ``IsoTimestamp`` is ``format: date-time`` (offsets, fractions); api.md §3.2: UTC, ``Z``,
    whole seconds.
18. OpenRPC describes ``camera_status_update`` / ``recording_status_update`` (and two HTTP
    downloads) as methods; api.md §5 makes them server notifications (a client calling one
    gets -32601) and adds ``system_health_update`` and the 23 topic events, which OpenRPC
    does not describe at all.
19. Free-form objects in OpenRPC that api.md fixes: ``get_metrics.camera_metrics.cameras``
    values (§4.20 table), ``subscribe_events.filters`` (§5.5 keys),
    ``discover_external_streams.discovery_options`` (§4.30: four booleans),
    ``get_metrics.recording_metrics`` (§4.20: reserved, currently ``{}``).
"""

from __future__ import annotations

import copy
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from jsonschema import Draft202012Validator, validators  # type: ignore[import-untyped]

OPENRPC_ENV = "CAMERA_SERVICE_OPENRPC"
API_MD_ENV = "CAMERA_SERVICE_API_MD"

# ----------------------------------------------------------------------------- locating the files


def _repo_root() -> Path:
    # tests/conformance_schema.py -> the checkout
    return Path(__file__).resolve().parents[1]


def openrpc_path(environ: dict[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    override = env.get(OPENRPC_ENV)
    if override:
        return Path(override)
    return (_repo_root().parent / "shared" / "reference" / "openrpc.json").resolve()


def api_md_path(environ: dict[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    override = env.get(API_MD_ENV)
    if override:
        return Path(override)
    return (_repo_root().parent / "shared" / "spec" / "api.md").resolve()


# ----------------------------------------------------------------------------- validation

def _is_integer(checker: Any, instance: Any) -> bool:
    # JSON integers only: 1.0 (a float after json.loads) and true are not integers.
    return isinstance(instance, int) and not isinstance(instance, bool)


def _ecma_pattern(pattern: str) -> re.Pattern[str]:
    # JSON Schema patterns are ECMA 262 regexes, whose "$" matches only at the very end;
    # Python's also matches before a final newline, which would let "camera0\n" pass
    # "^camera[0-9]+$". A final unescaped "$" becomes "\Z".
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + r"\Z"
    return re.compile(pattern)


def _pattern(validator: Any, pattern: str, instance: Any, schema: dict[str, Any]) -> Any:
    from jsonschema.exceptions import ValidationError  # type: ignore[import-untyped]

    if validator.is_type(instance, "string") and not _ecma_pattern(pattern).search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


StrictValidator = validators.extend(
    Draft202012Validator,
    validators={"pattern": _pattern},
    type_checker=Draft202012Validator.TYPE_CHECKER.redefine("integer", _is_integer))


def validator(schema: dict[str, Any]) -> Any:
    Draft202012Validator.check_schema(schema)
    return StrictValidator(schema)


def problems(schema: dict[str, Any], instance: Any) -> list[str]:
    """Every violation, as '<json path>: <message>' (empty when the instance conforms)."""
    return [f"{error.json_path}: {error.message}"
            for error in sorted(validator(schema).iter_errors(instance), key=lambda e: e.json_path)]


# ----------------------------------------------------------------------------- schema pieces

TIMESTAMP_RE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$"
CAMERA_ID_RE = r"^camera[0-9]+$"
UUID4_RE = r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"
RECORDING_STEM_RE = r"^camera[0-9]+_[0-9]{4}-[0-9]{2}-[0-9]{2}_[0-9]{2}-[0-9]{2}-[0-9]{2}$"
_HOST = r"(\[[0-9A-Fa-f:.]+\]|[^/:\[\]@\s]+)"

STRING: dict[str, Any] = {"type": "string"}
NON_EMPTY: dict[str, Any] = {"type": "string", "minLength": 1}
BOOLEAN: dict[str, Any] = {"type": "boolean"}
INTEGER: dict[str, Any] = {"type": "integer"}
COUNT: dict[str, Any] = {"type": "integer", "minimum": 0}
NUMBER: dict[str, Any] = {"type": "number"}
PERCENT: dict[str, Any] = {"type": "number", "minimum": 0, "maximum": 100}
TIMESTAMP: dict[str, Any] = {"type": "string", "pattern": TIMESTAMP_RE}
CAMERA_ID: dict[str, Any] = {"type": "string", "pattern": CAMERA_ID_RE}
RESOLUTION: dict[str, Any] = {"type": "string", "pattern": r"^[0-9]+x[0-9]+$"}
RTSP_URL: dict[str, Any] = {"type": "string", "pattern": rf"^rtsp://{_HOST}:[0-9]+/camera[0-9]+$"}
STREAMS_PATTERNS = {
    "rtsp": rf"^rtsp://{_HOST}:[0-9]+/camera[0-9]+$",
    "hls": rf"^http://{_HOST}:[0-9]+/camera[0-9]+/index\.m3u8$",
    "webrtc": rf"^http://{_HOST}:[0-9]+/camera[0-9]+$",
}


def string_array(items: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"type": "array", "items": items or STRING}


def array(items: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": items}


def const(value: Any) -> dict[str, Any]:
    kind = {bool: "boolean", str: "string", int: "integer", list: "array"}[type(value)]
    return {"type": kind, "const": value}


def enum(*values: str) -> dict[str, Any]:
    return {"type": "string", "enum": list(values)}


def obj(properties: dict[str, Any], optional: Iterable[str] = (), **extra: Any) -> dict[str, Any]:
    """A strict object: only these fields, all required except ``optional``."""
    optional = set(optional)
    unknown = optional - set(properties)
    if unknown:
        raise ValueError(f"optional fields {unknown} are not properties")
    return {"type": "object", "properties": dict(properties),
            "required": [k for k in properties if k not in optional],
            "additionalProperties": False, **extra}


# ----------------------------------------------------------------------------- OpenRPC

class OpenRpc:
    def __init__(self, path: Path) -> None:
        self.path = path
        with open(path, encoding="utf-8") as handle:
            self.document: dict[str, Any] = json.load(handle)
        self.components: dict[str, Any] = self.document["components"]["schemas"]
        self.methods: dict[str, dict[str, Any]] = {m["name"]: m for m in self.document["methods"]}

    def api_method_names(self) -> list[str]:
        """The JSON-RPC methods (not the two notifications, not the HTTP downloads)."""
        return [name for name, method in self.methods.items()
                if not name.startswith(("GET ", "HEAD "))
                and method["result"]["schema"].get("type") != "null"]

    def notification_names(self) -> list[str]:
        return [name for name, method in self.methods.items()
                if method["result"]["schema"].get("type") == "null"]

    def inline(self, schema: Any, depth: int = 0) -> Any:
        """``$ref``s inlined; ``IsoTimestamp`` becomes api.md §3.2's timestamp; descriptions,
        defaults and ``nullable`` (never used in results) are dropped."""
        if depth > 30:
            raise ValueError("recursive $ref")
        if isinstance(schema, list):
            return [self.inline(item, depth + 1) for item in schema]
        if not isinstance(schema, dict):
            return schema
        if "$ref" in schema:
            name = schema["$ref"].rsplit("/", 1)[-1]
            if name == "IsoTimestamp":
                return dict(TIMESTAMP)
            return self.inline(self.components[name], depth + 1)
        out: dict[str, Any] = {}
        for key, value in schema.items():
            if key in ("description", "default", "nullable", "title", "examples"):
                continue
            if key == "properties":
                out[key] = {k: self.inline(v, depth + 1) for k, v in value.items()}
            elif key in ("items", "additionalProperties"):
                out[key] = self.inline(value, depth + 1)
            else:
                out[key] = copy.deepcopy(value)
        return out

    def result_schema(self, method: str) -> Any:
        return self.inline(self.methods[method]["result"]["schema"])

    def notification_schema(self, name: str) -> dict[str, Any]:
        """A notification's ``params`` as one object (OpenRPC lists them as parameters)."""
        params = self.methods[name]["params"]
        return {"type": "object",
                "properties": {p["name"]: self.inline(p["schema"]) for p in params}}


def strict(schema: Any) -> Any:
    """api.md §3.7 on a converted OpenRPC schema: every object with ``properties`` gets
    ``additionalProperties: false`` (unless it already says what extra keys may be) and
    every listed field becomes required. Optional fields are re-marked by ``OVERLAYS``."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: strict(value) if key in ("items", "additionalProperties") else value
           for key, value in schema.items()}
    if "properties" in schema:
        out["properties"] = {k: strict(v) for k, v in schema["properties"].items()}
        out["required"] = list(schema["properties"])
        out.setdefault("additionalProperties", False)
        out["type"] = "object"
    return out


# ----------------------------------------------------------------------------- api.md

def _cells(line: str) -> list[str]:
    line = line.strip()
    line = line.removeprefix("|")
    line = line.removesuffix("|")
    return [cell.strip() for cell in line.split("|")]


def _tables(text: str) -> list[list[list[str]]]:
    """Every markdown table in ``text``: rows of cells, header first, separator dropped."""
    tables: list[list[list[str]]] = []
    current: list[list[str]] = []
    for line in text.splitlines():
        if line.strip().startswith("|"):
            cells = _cells(line)
            if all(re.fullmatch(r":?-{3,}:?", c) for c in cells if c):
                continue
            current.append(cells)
        elif current:
            tables.append(current)
            current = []
    if current:
        tables.append(current)
    return tables


def _ticks(text: str) -> list[str]:
    return re.findall(r"`([^`]+)`", text)


def _strip_parens(text: str) -> str:
    previous = None
    while previous != text:
        previous = text
        text = re.sub(r"\([^()]*\)", "", text)
    return text


def brace_fields(text: str) -> dict[str, str | None] | None:
    """``{a:int, b:string[], c}`` → {"a": "int", "b": "string[]", "c": None}; None if absent."""
    match = re.search(r"`\{([^`]*)\}`", text)
    if match is None:
        return None
    inner = _strip_parens(match.group(1))
    fields: dict[str, str | None] = {}
    for part in inner.split(","):
        part = part.strip()
        if not part:
            continue
        name, _, kind = part.partition(":")
        fields[name.strip()] = kind.strip() or None
    return fields or None  # "`{}` when none" describes a value, not a shape


@dataclass(frozen=True)
class ResultField:
    name: str
    type_text: str
    description: str
    optional: bool


class ApiDoc:
    """The parts of api.md the suite is built from."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.text = path.read_text(encoding="utf-8")
        self._headings = [(m.start(), len(m.group(1)), m.group(2).strip())
                          for m in re.finditer(r"^(#{2,3}) (.+)$", self.text, re.MULTILINE)]

    def section(self, title_prefix: str) -> str:
        """The body of the first heading starting with ``title_prefix`` (e.g. '5.4', '4.7 ')."""
        for index, (start, level, title) in enumerate(self._headings):
            if title == title_prefix or title.startswith(title_prefix + " "):
                end = len(self.text)
                for later_start, later_level, _ in self._headings[index + 1:]:
                    if later_level <= level:
                        end = later_start
                        break
                return self.text[start:end]
        raise KeyError(f"api.md has no section {title_prefix!r}")

    # -- §2.6 ----------------------------------------------------------------------------------

    def role_table(self) -> dict[str, str | None]:
        roles: dict[str, str | None] = {}
        for row in _tables(self.section("2.6"))[0][1:]:
            names = _ticks(row[1])
            if len(names) != 1 or not re.fullmatch(r"[a-z_]+", names[0]):
                continue  # the HTTP rows
            role_text = row[2].replace("*", "").strip()
            roles[names[0]] = None if role_text.startswith("none") else role_text
        return roles

    # -- §4 ------------------------------------------------------------------------------------

    def method_sections(self) -> dict[str, str]:
        sections: dict[str, str] = {}
        for _, level, title in self._headings:
            match = re.fullmatch(r"4\.([0-9]+) `([a-z_]+)`", title)
            if match and level == 3:
                sections[match.group(2)] = self.section(f"4.{match.group(1)}")
        return sections

    def result_fields(self, method: str) -> list[ResultField] | None:
        """The rows of the method's 'Result field' table (None when it has no table)."""
        body = self.method_sections()[method]
        for table in _tables(body):
            if table[0][0] == "Result field":
                fields = []
                for row in table[1:]:
                    optional = "optional" in row[1] or "omitted" in row[2].lower()
                    for name in _ticks(row[0]):
                        fields.append(ResultField(name, row[1], row[2], optional))
                return fields
        return None

    def error_list(self, method: str) -> set[tuple[int, str]]:
        """(code, reason) pairs the method's **Errors** list names. -32602 is always
        reported with reason ``invalid_params`` (§6.3), whatever rule tokens follow it."""
        body = self.method_sections()[method]
        start = body.index("**Errors:**")
        tail = body[start:]
        stop = re.search(r"\n```|\nCompatibility:|\nOn success", tail)
        text = tail[:stop.start()] if stop else tail
        reasons = self.reason_codes()
        found: set[tuple[int, str]] = set()
        code: int | None = None
        for line in text.splitlines():
            codes = [int(c) for c in re.findall(r"`(-32[0-9]{3})`", line)]
            if codes:
                code = codes[0]
                found.add((code, "invalid_params" if code == -32602 else ""))
            for token in _ticks(line):
                if token in reasons and code is not None and reasons[token] == code:
                    found.add((code, token))
        # A bare code with a reason named on the same or a nested line drops the placeholder;
        # a bare code that §6.3 gives only one reason (-32040, -32603) means that reason.
        only = {c: [r for r, c2 in reasons.items() if c2 == c] for c, _ in found}
        return {(c, r or only[c][0]) for c, r in found
                if r or not any(c2 == c and r2 for c2, r2 in found)
                if r or len(only[c]) == 1}

    # -- §5 ------------------------------------------------------------------------------------

    def topics(self) -> dict[str, tuple[list[str], set[str]]]:
        """§5.4: topic -> (fields in table order, optional fields)."""
        out: dict[str, tuple[list[str], set[str]]] = {}
        for row in _tables(self.section("5.4"))[0][1:]:
            topic = _ticks(row[0])[0]
            params = row[1]
            required_text, _, optional_text = params.partition("plus")
            def names(text: str) -> list[str]:
                return [t for t in _ticks(_strip_parens(text)) if re.fullmatch(r"[a-z_]+", t)]
            required = names(required_text)
            optional = [n for n in names(optional_text) if n not in required]
            out[topic] = (required + optional, set(optional))
        return out

    def notification_names(self) -> list[str]:
        """§5.1 rule 2: the three notification names subscribe_events accepts as topics."""
        rule = self.section("5.1")
        match = re.search(r"2\. \*\*Notifications by name\.\*\*(.*?)\n3\.", rule, re.DOTALL)
        assert match is not None
        names = [t for t in _ticks(match.group(1)) if t.endswith("_update")]
        return list(dict.fromkeys(names))

    def notification_fields(self, name: str) -> list[tuple[str, str]]:
        section = self.section("5.2" if name == "camera_status_update" else "5.3")
        return [(_ticks(row[0])[0], row[1]) for row in _tables(section)[0][1:]]

    # -- §6 ------------------------------------------------------------------------------------

    def error_codes(self) -> dict[int, dict[str, Any]]:
        """§6.2: code -> {"messages": [...], "fields": [...]}."""
        out: dict[int, dict[str, Any]] = {}
        for row in _tables(self.section("6.2"))[0][1:]:
            code = int(row[0])
            messages = [json.loads(t) for t in _ticks(row[1]) if t.startswith('"')]
            fields = [t for t in _ticks(_strip_parens(row[3])) if re.fullmatch(r"[a-z_]+", t)]
            out[code] = {"messages": messages, "fields": fields}
        return out

    def reason_codes(self) -> dict[str, int]:
        """§6.3: reason token -> code."""
        out: dict[str, int] = {}
        for row in _tables(self.section("6.3"))[0][1:]:
            for token in _ticks(row[1]):
                out[token] = int(row[0])
        return out

    def reason_notes(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for row in _tables(self.section("6.3"))[0][1:]:
            for token in _ticks(row[1]):
                out[token] = row[2]
        return out

    def fixed_state(self, reason: str) -> tuple[str | None, list[str] | None]:
        """§6.3's fixed ``state`` / ``allowed_states`` for a -32020 reason, where fixed."""
        notes = self.reason_notes().get(reason, "")
        state = re.search(r'`state` `("[^"`]*")`', notes)
        allowed = re.search(r"`allowed_states` `(\[[^\]`]*\])`", notes)
        return (json.loads(state.group(1)) if state else None,
                json.loads(allowed.group(1)) if allowed else None)

    def subscribable(self) -> list[str]:
        return list(self.topics()) + self.notification_names()


# ----------------------------------------------------------------------------- overlays

@dataclass(frozen=True)
class Overlay:
    """One api.md refinement of a converted OpenRPC result schema.

    ``pointer`` walks properties by name; ``"[]"`` steps into ``items`` and ``"*"`` into
    ``additionalProperties``. Actions: ``set`` (add or replace a field, required),
    ``drop`` (remove a field), ``optional`` (field may be absent), ``merge`` (add keywords to
    the node), ``replace`` (the node itself). ``kind`` is "disagreement" when OpenRPC says
    something else, "refinement" when api.md only says more.
    """

    method: str
    pointer: tuple[str, ...]
    action: str
    value: Any
    kind: str
    source: str


def _node(schema: dict[str, Any], pointer: tuple[str, ...]) -> dict[str, Any]:
    node = schema
    for step in pointer:
        if step == "[]":
            node = node["items"]
        elif step == "*":
            node = node["additionalProperties"]
        else:
            node = node["properties"][step]
    return node


def apply_overlay(schema: Any, overlay: Overlay) -> Any:
    if overlay.action == "replace" and not overlay.pointer:
        return copy.deepcopy(overlay.value)
    if overlay.action in ("merge", "replace"):
        parent = _node(schema, overlay.pointer[:-1]) if overlay.pointer else None
        if overlay.action == "merge":
            _node(schema, overlay.pointer).update(copy.deepcopy(overlay.value))
        else:
            assert parent is not None
            last = overlay.pointer[-1]
            if last == "[]":
                parent["items"] = copy.deepcopy(overlay.value)
            elif last == "*":
                parent["additionalProperties"] = copy.deepcopy(overlay.value)
            else:
                parent["properties"][last] = copy.deepcopy(overlay.value)
        return schema
    parent = _node(schema, overlay.pointer[:-1])
    name = overlay.pointer[-1]
    required = parent.setdefault("required", [])
    if overlay.action == "set":
        parent["properties"][name] = copy.deepcopy(overlay.value)
        if name not in required:
            required.append(name)
    elif overlay.action == "drop":
        del parent["properties"][name]
        if name in required:
            required.remove(name)
    elif overlay.action == "optional":
        assert name in parent["properties"], overlay
        if name in required:
            required.remove(name)
    else:
        raise ValueError(f"unknown overlay action {overlay.action!r}")
    return schema


D, R = "disagreement", "refinement"


def _ov(method: str, pointer: tuple[str, ...] | str, action: str, value: Any = None,
        kind: str = R, source: str = "") -> Overlay:
    if isinstance(pointer, str):
        pointer = tuple(p for p in pointer.split(".") if p)
    return Overlay(method, pointer, action, value, kind, source)


STREAMS = obj({key: {"type": "string", "pattern": pattern} for key, pattern in STREAMS_PATTERNS.items()})
CAMERA_STATUS = enum("CONNECTED", "DISCONNECTED", "ERROR")
FILE_ITEM_KEYS = ("filename", "file_size", "modified_time", "download_url")
RECORDING_URL = {"type": "string", "pattern": r"^/files/recordings/[A-Za-z0-9._-]+\.(mp4|ts)$"}
SNAPSHOT_URL = {"type": "string", "pattern": r"^/files/snapshots/[A-Za-z0-9._-]+\.(jpg|jpeg|png)$"}
NOT_A_RECORDING_EXT = {"not": {"pattern": r"\.(mp4|ts)$"}}
EXTERNAL_STREAM = obj({
    "url": {"type": "string", "pattern": r"^rtsps?://"},
    "type": NON_EMPTY,
    "name": NON_EMPTY,
    "status": enum("DISCOVERED", "ERROR"),
    "discovered_at": TIMESTAMP,
    "last_seen": TIMESTAMP,
    # api.md §4.30: "Free-form" -- the one object whose keys the contract leaves open.
    "capabilities": {"type": "object"},
})
METRICS_CAMERA = obj({
    "path": CAMERA_ID,  # "the camera id, never a device path"
    "name": STRING,
    "status": CAMERA_STATUS,
    "device_num": COUNT,
    "last_seen": TIMESTAMP,
    "capabilities": obj({"driver_name": STRING, "card_name": STRING, "bus_info": STRING,
                         "version": STRING, "capabilities": string_array(),
                         "device_caps": string_array()}),
    "formats": array(obj({"pixel_format": STRING, "width": COUNT, "height": COUNT,
                          "frame_rates": string_array()})),
})
COMPONENT_STATE = enum("RUNNING", "STOPPED", "ERROR", "STARTING", "STOPPING")
READINESS_MESSAGES = {
    "starting": "System is initializing, please wait",
    "partial": "Some cameras available, discovery in progress",
    "ready": "System is fully operational",
}


def _overlays(doc: ApiDoc) -> list[Overlay]:
    subscribable = doc.subscribable()
    topic_name = {"type": "string", "enum": subscribable}
    out = [
        # -- §4.2 authenticate
        _ov("authenticate", "authenticated", "replace", const(True), R, "§4.2 always true"),
        _ov("authenticate", "permissions", "replace", string_array(enum("view", "control", "admin")),
            R, "§2.5 permissions"),
        _ov("authenticate", "expires_at", "optional", None, R, "§4.2 omitted for a key without expiry"),
        _ov("authenticate", "session_id", "replace", {"type": "string", "pattern": UUID4_RE}, R,
            "§1.4 a random UUID v4"),
        # -- §3.4 / §4.3 cameras
        _ov("get_camera_list", "cameras.[].streams", "replace", STREAMS, D, "§3.4 URL forms"),
        _ov("get_camera_list", "cameras.[].resolution", "merge", {"pattern": r"^([0-9]+x[0-9]+)?$"}, R, "§4.3"),
        _ov("get_camera_list", "cameras.[].fps", "merge", {"minimum": 0}, R, "§4.3"),
        _ov("get_camera_list", "total", "merge", {"minimum": 0}, R, "§4.3"),
        _ov("get_camera_list", "connected", "merge", {"minimum": 0}, R, "§4.3"),
        _ov("get_camera_status", "streams", "replace", STREAMS, D, "§3.4 URL forms"),
        _ov("get_camera_status", "resolution", "merge", {"pattern": r"^([0-9]+x[0-9]+)?$"}, R, "§4.3"),
        _ov("get_camera_status", "fps", "merge", {"minimum": 0}, R, "§4.3"),
        _ov("get_camera_status", "metrics", "set", obj({"bytes_sent": COUNT, "readers": COUNT, "uptime": COUNT}),
            D, "§4.4 metrics always present; OpenRPC's Camera has none"),
        _ov("get_camera_status", "capabilities", "set",
            obj({"formats": string_array(), "resolutions": string_array(RESOLUTION)}), D,
            "§4.4 capabilities (optional); OpenRPC's Camera has none"),
        _ov("get_camera_status", "capabilities", "optional", None, D, "§4.4 present once probed"),
        # -- §4.5
        _ov("get_camera_capabilities", "frame_rates", "set", array(COUNT), D,
            "§4.5 compatibility alias of fps_options"),
        _ov("get_camera_capabilities", "resolutions", "replace", string_array(RESOLUTION), R, "§4.5 <W>x<H>"),
        _ov("get_camera_capabilities", "fps_options", "replace", array(COUNT), R, "§4.5"),
        # -- §4.6
        _ov("take_snapshot", "status", "replace", const("SUCCESS"), D, "§3.7 value this server sends"),
        _ov("take_snapshot", "filename", "merge", {"pattern": r"\.([jJ][pP][eE]?[gG])$"}, R,
            "§4.6 .jpg appended unless .jpg/.jpeg"),
        _ov("take_snapshot", "file_size", "merge", {"minimum": 1}, R, "§4.6 bytes of a JPEG"),
        _ov("take_snapshot", "file_path", "merge", {"pattern": r"^/"}, R, "§4.6 absolute path"),
        # -- §4.7, §4.8
        _ov("start_recording", "status", "replace", const("RECORDING"), D, "§3.7 value this server sends"),
        _ov("start_recording", "format", "replace", enum("fmp4", "mp4"), D, "§4.7 mkv is -32030"),
        _ov("start_recording", "filename", "merge", {"pattern": RECORDING_STEM_RE}, R, "§3.5 stem"),
        _ov("stop_recording", "status", "replace", const("STOPPED"), D, "§3.7 value this server sends"),
        _ov("stop_recording", "format", "replace", enum("fmp4", "mp4"), D, "§4.7 mkv is -32030"),
        _ov("stop_recording", "filename", "merge", {"pattern": RECORDING_STEM_RE}, R, "§3.5 stem"),
        _ov("stop_recording", "duration", "merge", {"minimum": 0}, R, "§4.8"),
        _ov("stop_recording", "file_size", "merge", {"minimum": 0}, R, "§4.8"),
        # -- §4.9-4.14 files
        *[_ov(method, path, "merge", {"minimum": minimum}, D if path == "limit" else R, "§3.3")
          for method in ("list_recordings", "list_snapshots")
          for path, minimum in (("limit", 1), ("offset", 0), ("total", 0), ("files.[].file_size", 0))],
        *[_ov(method, "limit", "merge", {"maximum": 1000}, R, "§3.3")
          for method in ("list_recordings", "list_snapshots")],
        _ov("list_recordings", "files.[].download_url", "replace", RECORDING_URL, R, "§3.5 real extension"),
        _ov("list_recordings", "files.[].filename", "merge", NOT_A_RECORDING_EXT, R, "§3.5 stem"),
        _ov("list_snapshots", "files.[].download_url", "replace", SNAPSHOT_URL, R, "§3.5"),
        _ov("get_recording_info", "download_url", "replace", RECORDING_URL, R, "§3.5"),
        _ov("get_recording_info", "filename", "merge", NOT_A_RECORDING_EXT, R, "§3.5 stem"),
        _ov("get_recording_info", "file_size", "merge", {"minimum": 0}, R, "§4.11"),
        _ov("get_recording_info", "duration", "merge", {"minimum": 0}, R, "§4.11"),
        _ov("get_snapshot_info", "download_url", "replace", SNAPSHOT_URL, R, "§3.5"),
        _ov("get_snapshot_info", "file_size", "merge", {"minimum": 0}, R, "§4.12"),
        _ov("delete_recording", "deleted", "replace", const(True), R, "§4.13 always true"),
        _ov("delete_recording", "message", "replace", const("Recording file deleted successfully"), R, "§4.13"),
        _ov("delete_recording", "filename", "merge", NOT_A_RECORDING_EXT, R, "§4.13 stem"),
        _ov("delete_snapshot", "deleted", "replace", const(True), R, "§4.14 always true"),
        _ov("delete_snapshot", "message", "replace", const("Snapshot file deleted successfully"), R, "§4.14"),
        # -- §4.15-4.19 streaming
        _ov("start_streaming", "status", "replace", const("STARTED"), D, "§3.7 value this server sends"),
        _ov("start_streaming", "stream_url", "replace", RTSP_URL, R, "§3.4 rtsp form"),
        _ov("start_streaming", "stream_name", "replace", CAMERA_ID, R, "§4.15 equals the camera id"),
        _ov("start_streaming", "auto_close_after", "merge", {"pattern": r"^[0-9]+s$"}, R, "§4.15 '<seconds>s'"),
        _ov("stop_streaming", "status", "replace", const("STOPPED"), D, "§3.7 value this server sends"),
        _ov("stop_streaming", "stream_name", "replace", CAMERA_ID, R, "§4.16"),
        _ov("stop_streaming", "duration", "merge", {"minimum": 0}, R, "§4.16"),
        _ov("stop_streaming", "message", "set", STRING, D, "§4.16 message; OpenRPC StreamStop has none"),
        _ov("stop_streaming", "message", "optional", None, D, "§4.16 optional"),
        _ov("get_stream_url", "stream_url", "replace", RTSP_URL, R, "§3.4 rtsp form"),
        _ov("get_stream_url", "stream_name", "replace", CAMERA_ID, R, "§4.17"),
        _ov("get_stream_url", "active_consumers", "merge", {"minimum": 0}, R, "§4.17"),
        _ov("get_stream_status", "stream_name", "replace", CAMERA_ID, R, "§4.18"),
        _ov("get_stream_status", "start_time", "optional", None, R, "§4.18 present while ready"),
        _ov("get_stream_status", "", "merge", {
            "if": {"properties": {"ready": {"const": True}}, "required": ["ready"]},
            "then": {"required": ["start_time"]},
            "else": {"not": {"required": ["start_time"]}}}, R, "§4.18 start_time present while ready is true"),
        *[_ov("get_stream_status", path, "merge", {"minimum": 0}, R, "§4.18")
          for path in ("ffmpeg_process.pid", "ffmpeg_process.uptime", "mediamtx_path.readers",
                       "metrics.bytes_sent", "metrics.frames_sent", "metrics.bitrate", "metrics.fps")],
        *[_ov("get_streams", f"[].{path}", "merge", {"minimum": 0}, R, "§4.19")
          for path in ("readers", "bytes_sent")],
        # -- §4.20 get_metrics
        _ov("get_metrics", "system_metrics.goroutines", "drop", None, D, "§4.20 no goroutines"),
        _ov("get_metrics", "system_metrics.threads", "set", {"type": "integer", "minimum": 1}, D,
            "§4.20 threads"),
        *[_ov("get_metrics", f"system_metrics.{key}", "replace", PERCENT, R, "§4.20 0-100")
          for key in ("cpu_usage", "memory_usage", "disk_usage")],
        _ov("get_metrics", "camera_metrics.connected_cameras", "merge", {"minimum": 0}, R, "§4.20"),
        _ov("get_metrics", "camera_metrics.cameras", "replace",
            {"type": "object", "patternProperties": {CAMERA_ID_RE: METRICS_CAMERA},
             "additionalProperties": False}, D, "§4.20 keyed by camera id, fixed value fields"),
        _ov("get_metrics", "recording_metrics", "replace",
            {"type": "object", "additionalProperties": False}, D, "§4.20 reserved, currently {}"),
        *[_ov("get_metrics", f"stream_metrics.{key}", "merge", {"minimum": 0}, R, "§4.20")
          for key in ("active_streams", "total_streams", "total_viewers")],
        # -- §4.21 get_status
        _ov("get_status", "uptime", "merge", {"minimum": 0}, R, "§4.21"),
        _ov("get_status", "version", "replace", const("1.0.0"), R, "§4.21"),
        *[_ov("get_status", f"components.{key}", "replace", COMPONENT_STATE, R, "§4.21 component values")
          for key in ("websocket_server", "camera_monitor", "mediamtx")],
        # -- §4.22 get_system_status
        _ov("get_system_status", "", "replace", {
            **obj({"status": enum("starting", "partial", "ready"),
                   "message": {"type": "string", "enum": list(READINESS_MESSAGES.values())},
                   "available_cameras": string_array(CAMERA_ID),
                   "discovery_active": BOOLEAN}),
            "allOf": [{"if": {"properties": {"status": {"const": status}}},
                       "then": {"properties": {"message": {"const": message}}}}
                      for status, message in READINESS_MESSAGES.items()]},
            D, "§4.22 readiness object, not StatusResult"),
        # -- §4.23 get_server_info
        _ov("get_server_info", "go_version", "drop", None, D, "§4.23 no go_version"),
        _ov("get_server_info", "python_version", "set", {"type": "string", "pattern": r"^3\.[0-9]+\.[0-9]+"},
            D, "§4.23 python_version"),
        _ov("get_server_info", "name", "replace", const("MediaMTX Camera Service"), R, "§4.23"),
        _ov("get_server_info", "version", "replace", const("1.0.0"), R, "§4.23"),
        _ov("get_server_info", "architecture", "merge", {"minLength": 1, "not": {"enum": ["x86_64", "aarch64"]}},
            R, "§4.23 normalised"),
        _ov("get_server_info", "capabilities", "replace", const(["snapshots", "recordings", "streaming"]),
            R, "§4.23"),
        _ov("get_server_info", "supported_formats", "replace", const(["fmp4", "mp4", "jpg"]), R, "§4.23"),
        _ov("get_server_info", "max_cameras", "merge", {"minimum": 1}, R, "§4.23"),
        _ov("get_server_info", "build_date", "merge", {"minLength": 1}, R, "§4.23"),
        # -- §4.24 get_storage_info
        *[_ov("get_storage_info", key, "merge", {"minimum": 0}, R, "§4.24 sizes")
          for key in ("total_space", "used_space", "available_space", "recordings_size", "snapshots_size")],
        _ov("get_storage_info", "usage_percentage", "replace", PERCENT, R, "§3.2 percentages"),
        # -- §4.25, §4.26
        _ov("set_retention_policy", "policy_type", "replace", enum("age", "size", "manual"), R, "§4.25 as set"),
        _ov("set_retention_policy", "max_age_days", "optional", None, R, "§4.25 present when set"),
        _ov("set_retention_policy", "max_age_days", "merge", {"minimum": 1}, R, "§4.25"),
        _ov("set_retention_policy", "max_size_gb", "optional", None, R, "§4.25 present when set"),
        _ov("set_retention_policy", "max_size_gb", "merge", {"exclusiveMinimum": 0, "maximum": 100}, R, "§4.25"),
        _ov("set_retention_policy", "message", "replace", const("Retention policy configured successfully"),
            R, "§4.25"),
        _ov("cleanup_old_files", "files_deleted", "merge", {"minimum": 0}, R, "§4.26"),
        _ov("cleanup_old_files", "space_freed", "merge", {"minimum": 0}, R, "§4.26"),
        _ov("cleanup_old_files", "", "merge", {
            "if": {"properties": {"cleanup_executed": {"const": False}}},
            "then": {"properties": {"message": {"const": "Retention policy is disabled; no files deleted"}}},
            "else": {"properties": {"message": {"const": "Cleanup completed successfully"}}}},
            R, "§4.26 message by cleanup_executed"),
        # -- §4.27-4.29 subscriptions
        _ov("subscribe_events", "subscribed", "replace", const(True), R, "§4.27 always true"),
        _ov("subscribe_events", "topics", "replace", string_array(topic_name), R, "§5.4 + §5.1 rule 2"),
        _ov("subscribe_events", "filters", "replace",
            obj({"device": CAMERA_ID, "topic": topic_name, "timestamp_after": STRING,
                 "timestamp_before": STRING},
                optional=("device", "topic", "timestamp_after", "timestamp_before")),
            D, "§5.5 filter keys"),
        _ov("unsubscribe_events", "unsubscribed", "replace", const(True), R, "§4.28 always true"),
        _ov("unsubscribe_events", "topics", "replace", string_array(topic_name), R, "§4.28"),
        _ov("get_subscription_stats", "global_stats.total_subscriptions", "merge", {"minimum": 0}, R, "§4.29"),
        _ov("get_subscription_stats", "global_stats.active_clients", "merge", {"minimum": 0}, R, "§4.29"),
        _ov("get_subscription_stats", "global_stats.topic_counts", "replace",
            {"type": "object", "propertyNames": topic_name,
             "additionalProperties": {"type": "integer", "minimum": 1}},
            R, "§4.29 only topics with a subscriber"),
        _ov("get_subscription_stats", "client_topics", "replace", string_array(topic_name), R, "§4.29"),
        _ov("get_subscription_stats", "client_id", "replace", {"type": "string", "pattern": UUID4_RE}, R,
            "§1.4 = session_id"),
        # -- §4.30-4.34 external streams
        *[_ov(method, key, "replace", array(EXTERNAL_STREAM), R, "§4.30 ExternalStream")
          for method, keys in (("discover_external_streams", ("discovered_streams", "skydio_streams",
                                                               "generic_streams")),
                               ("get_external_streams", ("external_streams", "skydio_streams",
                                                         "generic_streams")))
          for key in keys],
        _ov("discover_external_streams", "total_found", "merge", {"minimum": 0}, R, "§4.30"),
        _ov("discover_external_streams", "discovery_options", "replace",
            obj({"skydio_enabled": BOOLEAN, "generic_enabled": BOOLEAN, "force_rescan": BOOLEAN,
                 "include_offline": BOOLEAN}), D, "§4.30 the four effective options"),
        _ov("discover_external_streams", "scan_duration", "merge", {"pattern": r"^[0-9]+(\.[0-9]+)?s$"},
            R, "§3.2 duration string"),
        _ov("get_external_streams", "total_count", "merge", {"minimum": 0}, R, "§4.33"),
        _ov("add_external_stream", "status", "replace", const("ADDED"), D, "§3.7 value this server sends"),
        _ov("add_external_stream", "stream_url", "merge", {"pattern": r"^rtsps?://"}, R, "§4.31"),
        _ov("add_external_stream", "stream_name", "merge", {"minLength": 1, "maxLength": 255}, R, "§4.31"),
        _ov("add_external_stream", "stream_type", "merge", {"minLength": 1, "maxLength": 64}, R, "§4.31"),
        _ov("remove_external_stream", "status", "replace", const("REMOVED"), D, "§3.7 value this server sends"),
        _ov("set_discovery_interval", "status", "replace", const("UPDATED"), D, "§3.7 value this server sends"),
        _ov("set_discovery_interval", "message", "replace", const("Discovery interval updated successfully"),
            R, "§4.34"),
        _ov("set_discovery_interval", "scan_interval", "merge", {"minimum": 0}, R, "§4.34"),
    ]
    return out


# ----------------------------------------------------------------------------- errors (§6)

_ERROR_BASE = {"reason": NON_EMPTY, "details": NON_EMPTY, "suggestion": NON_EMPTY}
_FIELD_TYPES: dict[str, dict[str, Any]] = {
    "hint": NON_EMPTY,
    "param": NON_EMPTY,
    "rule": enum("required", "type", "pattern", "filename", "range", "enum", "non_empty",
                 "url_scheme", "unknown_topic", "unknown_filter"),
    "request_id": NON_EMPTY,
    "required_role": enum("viewer", "operator", "admin"),
    "have_role": enum("viewer", "operator", "admin"),
    "resource": enum("camera", "recording", "snapshot", "stream", "external_stream"),
    "id": NON_EMPTY,
    "state": NON_EMPTY,
    "allowed_states": string_array(),
    "feature": NON_EMPTY,
    "retry_after_ms": {"type": "integer", "minimum": 0},
    "dependency": enum("mediamtx", "ffmpeg", "v4l2", "service"),
    "detail": STRING,
    # §6.3 extras of storage_critical
    "usage_percentage": {"type": "number", "minimum": 0, "maximum": 100},
    "block_percent": NUMBER,
}
# §6.3 "extra fields" beyond the per-code ones of §6.2, by reason.
REASON_EXTRAS = {"storage_critical": ("usage_percentage", "block_percent")}


class Contract:
    """Every schema of the suite, built once per test session."""

    def __init__(self, openrpc: OpenRpc, doc: ApiDoc) -> None:
        self.openrpc = openrpc
        self.doc = doc
        self.overlays = _overlays(doc)
        self.methods = list(doc.role_table())
        self.results: dict[str, Any] = {}
        for method in self.methods:
            schema = strict(openrpc.result_schema(method))
            for overlay in self.overlays:
                if overlay.method == method:
                    schema = apply_overlay(schema, overlay)
            self.results[method] = schema
        self._error_codes = doc.error_codes()
        self._reasons = doc.reason_codes()

    # -- results -------------------------------------------------------------------------------

    def result(self, method: str) -> dict[str, Any]:
        return self.results[method]

    # -- notifications -------------------------------------------------------------------------

    def notification(self, name: str) -> dict[str, Any]:
        if name == "system_health_update":
            return self.topic("system.health")
        schema = self.openrpc.notification_schema(name)
        fields = [f for f, _ in self.doc.notification_fields(name)]
        if list(schema["properties"]) != fields:
            raise AssertionError(f"OpenRPC and api.md list different fields for {name}")
        schema = strict(schema)
        if name == "camera_status_update":
            schema["properties"]["streams"] = STREAMS  # §3.4 forms (disagreement 3)
            schema["properties"]["resolution"] = {"type": "string", "pattern": r"^([0-9]+x[0-9]+)?$"}
            schema["properties"]["fps"] = COUNT
        else:
            # §5.3: ERROR is in the enum but this server never sends it.
            schema["properties"]["status"] = enum("STARTED", "STOPPED", "FAILED")
            schema["properties"]["duration"] = COUNT
        return schema

    _TOPIC_FIELD_TYPES: ClassVar[dict[str, dict[str, Any]]] = {
        "device": CAMERA_ID, "timestamp": TIMESTAMP, "name": STRING, "driver": STRING,
        "card_name": STRING, "bus_info": STRING, "capabilities": string_array(), "error": STRING,
        "filename": NON_EMPTY, "duration": COUNT, "reason": NON_EMPTY, "stream_id": CAMERA_ID,
        "stream_type": const("camera"), "ready": BOOLEAN, "exists": BOOLEAN,
        "resolution": {"type": "string", "pattern": r"^([0-9]+x[0-9]+)?$"},
        "old_status": CAMERA_STATUS, "new_status": CAMERA_STATUS,
        "metrics": obj({"cpu_usage": PERCENT, "memory_usage": PERCENT, "disk_usage": PERCENT}),
        "version": NON_EMPTY, "build_info": NON_EMPTY,
    }
    _TOPIC_STATUS: ClassVar[dict[str, dict[str, Any]]] = {
        "camera.connected": const("CONNECTED"), "camera.disconnected": const("DISCONNECTED"),
        "recording.start": const("STARTED"), "recording.stop": const("STOPPED"),
        "recording.error": const("FAILED"), "recording.progress": const("RECORDING"),
        "system.health": enum("HEALTHY", "DEGRADED", "UNHEALTHY"),
    }

    def topic(self, topic: str) -> dict[str, Any]:
        fields, optional = self.doc.topics()[topic]
        properties: dict[str, Any] = {}
        for field in fields:
            if field == "status":
                properties[field] = self._TOPIC_STATUS[topic]
            elif topic == "mediamtx.recording_stopped" and field == "duration":
                properties[field] = {"type": "number", "minimum": 0}  # §3.2 float seconds
            elif topic == "recording.start" and field == "duration":
                properties[field] = const(0)
            elif topic == "system.shutdown" and field == "reason":
                properties[field] = NON_EMPTY
            else:
                properties[field] = self._TOPIC_FIELD_TYPES[field]
        return obj(properties, optional=optional)

    def message_schema(self, method: str) -> dict[str, Any]:
        """A whole server notification message: no id, params by name."""
        params = self.notification(method) if method.endswith("_update") else self.topic(method)
        return obj({"jsonrpc": const("2.0"), "method": const(method), "params": params})

    # -- errors --------------------------------------------------------------------------------

    def error_message(self, code: int, reason: str, resource: str | None = None) -> str:
        messages = self._error_codes[code]["messages"]
        if code == -32001:
            return "Authentication required" if reason == "auth_required" else \
                "Authentication failed or token expired"
        if code == -32010:
            index = ["camera", "recording", "snapshot", "stream", "external_stream"].index(resource or "")
            return messages[index]
        assert len(messages) == 1, (code, messages)
        return messages[0]

    def error_fields(self, code: int, reason: str) -> list[str]:
        fields = [f for f in self._error_codes[code]["fields"] if f != "reason"]
        return fields + list(REASON_EXTRAS.get(reason, ()))

    def error(self, code: int, reason: str, resource: str | None = None) -> dict[str, Any]:
        """The whole ``error`` object for (code, reason): exact message and data key set."""
        if self._reasons.get(reason) != code:
            raise AssertionError(f"api.md §6.3 does not list reason {reason!r} under {code}")
        data = dict(_ERROR_BASE)
        data["reason"] = const(reason)
        for field in self.error_fields(code, reason):
            data[field] = _FIELD_TYPES[field]
        if code == -32010 and resource is not None:
            data["resource"] = const(resource)
        return obj({"code": const(code), "message": const(self.error_message(code, reason, resource)),
                    "data": obj(data)})


_CACHE: dict[tuple[str, str], Contract] = {}


def contract() -> Contract:
    key = (str(openrpc_path()), str(api_md_path()))
    if key not in _CACHE:
        _CACHE[key] = Contract(OpenRpc(openrpc_path()), ApiDoc(api_md_path()))
    return _CACHE[key]


# ----------------------------------------------------------------------------- claims about OpenRPC

def disagreements(openrpc: OpenRpc) -> dict[str, bool]:
    """Each numbered disagreement of the module docstring, checked against the OpenRPC file:
    True when the file still says what the docstring claims."""
    c = openrpc.components
    m = openrpc.methods
    errors = {e["code"]: e["message"] for e in openrpc.document["components"]["errors"]}

    def result(method: str) -> Any:
        return openrpc.result_schema(method)

    return {
        "1 params never required": all(not p.get("required") for mm in m.values() for p in mm["params"]),
        "2 limit minimum 0": c["Pagination"]["properties"]["limit"]["minimum"] == 0,
        "3 illustrative hls/webrtc": "/hls/" in c["Streams"]["properties"]["hls"]["description"]
        and "webrtc://" in c["Streams"]["properties"]["webrtc"]["description"],
        "4 get_system_status is StatusResult": m["get_system_status"]["result"]["schema"]
        == {"$ref": "#/components/schemas/StatusResult"},
        "5 no frame_rates": "frame_rates" not in c["CameraCapabilities"]["properties"],
        "6 go_version": "go_version" in c["ServerInfo"]["properties"]
        and "python_version" not in c["ServerInfo"]["properties"],
        "7 goroutines": "goroutines" in c["MetricsResult"]["properties"]["system_metrics"]["properties"],
        "8 FAILED/ERROR in result enums": "FAILED" in c["SnapshotInfo"]["properties"]["status"]["enum"]
        and "ERROR" in c["RecordingStart"]["properties"]["status"]["enum"],
        "9 -32010 Not Found": errors.get(-32010) == "Not Found",
        "10 get_camera_status is plain Camera": "metrics" not in result("get_camera_status")["properties"],
        "11 StreamStop without message": "message" not in c["StreamStop"]["properties"],
        "12 stop_recording enum STOPPED/FAILED": c["RecordingStop"]["properties"]["status"]["enum"]
        == ["STOPPED", "FAILED"],
        "13 sparse required": result("get_recording_info")["required"] == ["filename"]
        and all("required" not in c[n] for n in ("ServerInfo", "StorageInfo", "SubscriptionStats",
                                                  "MetricsResult", "ExternalStreamsResult",
                                                  "ExternalStreamDiscoveryResult")),
        "14 error messages": errors.get(-32601) == "Method Not Found" and errors.get(-32602) == "Invalid Params"
        and errors.get(-32001) == "Auth Failed" and -32700 not in errors,
        "15 duration is number": next(p for p in m["start_recording"]["params"]
                                      if p["name"] == "duration")["schema"]["type"] == "number",
        "16 mkv in result format": "mkv" in c["RecordingStart"]["properties"]["format"]["enum"],
        "17 IsoTimestamp date-time": c["IsoTimestamp"].get("format") == "date-time",
        "18 notifications as methods": {"camera_status_update", "recording_status_update"}
        <= set(openrpc.notification_names()) and "system_health_update" not in m,
        "19 free-form objects": c["MetricsResult"]["properties"]["camera_metrics"]["properties"]["cameras"]
        ["additionalProperties"] == {"type": "object"}
        and next(p for p in m["subscribe_events"]["params"] if p["name"] == "filters")["schema"]["type"]
        == "object"
        and c["ExternalStreamDiscoveryResult"]["properties"]["discovery_options"] == {"type": "object"},
    }
