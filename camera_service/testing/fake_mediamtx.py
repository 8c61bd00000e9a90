"""An in-process stand-in for MediaMTX's v3 control API, checked against MediaMTX's OpenAPI.

``FakeMediaMTX`` is a leaf :class:`twisted.web.resource.Resource`. It works behind
``treq.testing.StubTreq(fake)`` (in memory) and behind a real listening port through
:class:`FakeMediaMTXServer` (``start(reactor, port=0)`` / ``stop()``), which is what makes
``outage()`` a real "connection refused".

What it enforces, because MediaMTX does (media.md §2, §9):

- Every request body is validated against the operation's ``requestBody`` schema in
  MediaMTX's ``openapi.yaml`` (v1.20.1), with ``additionalProperties: false`` on every object
  schema that lists properties: an unknown field is a 400 ``json: unknown field "x"``, a wrong
  type a 400 ``json: cannot unmarshal ...``. Durations must parse as Go durations.
- The path-level rules of MediaMTX's ``conf.Path.validate`` that a client can trip over are
  applied to the whole candidate configuration on every write (as MediaMTX validates the
  whole new configuration): ``'sourceOnDemand' is useless when source is 'publisher'``,
  ``invalid source``, ``runOnDemand`` only with ``source: publisher``, ``redirect`` needs
  ``sourceRedirect``, regexp paths with a static source need ``sourceOnDemand``,
  ``runOnInit`` not on regexp paths, path-name syntax, and the playback ``recordPath``
  elements (``%Y %m %d %H %M %S %f``) when global ``playback`` is on.
- Every rejected body is also appended to :attr:`FakeMediaMTX.violations`, so a test can
  assert that the code under test never sent MediaMTX something it rejects.
- Every JSON response the fake sends is validated against the response schema the OpenAPI
  document declares for that operation and status code; a mismatch (or an undeclared status
  code) raises ``AssertionError``: that is a bug in the fake, not in the code under test.

Routing follows MediaMTX's gin router: routes are registered per method, there is no
``NoRoute``/``NoMethod`` handler, so **a wrong method on a known route and an unknown route
both answer 404 with gin's plain-text body ``404 page not found``** (never 405).

Version emulation (``version=``, default ``"v1.20.1"``):

- v1.15.0–v1.15.4: successful writes answer 200 with an empty body, and error bodies carry
  only ``{"error": ...}``; from v1.15.5 ``{"status": "ok"}`` and ``{"status": "error", ...}``;
- before v1.15.2 there is no ``/v3/info`` route (404);
- ``online``/``onlineTime``/``available``/``availableTime`` appear from v1.16,
  ``inboundBytes``/``outboundBytes``/``inboundFramesInError``/``tracks2`` from v1.17;
- hot reload: on v1.15.0 only a change of ``record`` keeps a live path up, from v1.15.1 any
  ``record*`` field; any other change "restarts" the path (its live state and readers are
  dropped and the change is logged in :attr:`FakeMediaMTX.path_reloads`).

Known limits: request bodies are checked against the v1.20.1 schema whatever version is
emulated (fields added after v1.15.0 are accepted); error texts for schema failures are
Go-like, not byte-identical; ``oneOf`` is checked as ``anyOf`` (MediaMTX's
``PathTrackCodecProps`` alternatives are indistinguishable, and Go does not check it);
``null`` for a non-nullable field is rejected (Go would silently ignore it); field names are
matched case-sensitively (Go's decoder is case-insensitive); gin's trailing-slash redirects
are not emulated; ``maximum segment duration`` and other rpiCamera/SRT rules are not checked.
"""

from __future__ import annotations

import copy
import json
import os
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, NamedTuple
from urllib.parse import parse_qs, unquote, urlsplit

import yaml
from jsonschema import Draft4Validator  # type: ignore[import-untyped]
from jsonschema.exceptions import best_match  # type: ignore[import-untyped]
from twisted.internet import defer
from twisted.protocols.policies import WrappingFactory
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

OPENAPI_ENV = "CAMERA_SERVICE_MEDIAMTX_OPENAPI"
DEFAULT_VERSION = "v1.20.1"

_NOT_FOUND_BODY = b"404 page not found"

# PathConf fields MediaMTX decodes as Go durations (conf.Duration / StringDuration).
DURATION_FIELDS = frozenset({
    "recordDeleteAfter", "recordPartDuration", "recordSegmentDuration",
    "runOnDemandStartTimeout", "runOnDemandCloseAfter",
    "sourceOnDemandStartTimeout", "sourceOnDemandCloseAfter",
    "whepHandshakeTimeout", "whepSTUNGatherTimeout", "whepTrackGatherTimeout",
})

_SOURCE_PREFIXES = (
    "rtsp://", "rtsps://", "rtsp+http://", "rtsps+http://", "rtsp+ws://", "rtsps+ws://",
    "rtmp://", "rtmps://", "http://", "https://", "udp://", "udp+mpegts://", "unix+mpegts://",
    "udp+rtp://", "srt://", "whep://", "wheps://", "moqt://",
)
_PATH_NAME = re.compile(r"^[0-9a-zA-Z_\-/.~:]+$")
_GO_DURATION = re.compile(r"^[-+]?(?:(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:ns|us|µs|μs|ms|s|m|h|d))+$")
_PLAYBACK_ELEMENTS = ("%Y", "%m", "%d", "%H", "%M", "%S", "%f")


# --------------------------------------------------------------------------- locating the spec

def _repo_root() -> Path:
    # camera_service/testing/fake_mediamtx.py -> the checkout
    return Path(__file__).resolve().parents[2]


def default_openapi_path(environ: dict[str, str] | None = None) -> Path:
    """MediaMTX's ``openapi.yaml``: ``$CAMERA_SERVICE_MEDIAMTX_OPENAPI``, else
    ``../shared/reference/mediamtx/openapi.yaml`` relative to the repository root."""
    env = os.environ if environ is None else environ
    override = env.get(OPENAPI_ENV)
    if override:
        return Path(override)
    return (_repo_root().parent / "shared" / "reference" / "mediamtx" / "openapi.yaml").resolve()


def parse_version(version: str) -> tuple[int, int, int]:
    match = re.match(r"^v?(\d+)\.(\d+)\.(\d+)", version)
    if not match:
        raise ValueError(f"not a MediaMTX version: {version!r}")
    return int(match[1]), int(match[2]), int(match[3])


def _rfc3339(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=UTC).isoformat().replace("+00:00", "Z")


# --------------------------------------------------------------------------- OpenAPI -> JSON Schema

class OpenAPISpec:
    """MediaMTX's OpenAPI 3.0 document, turned into Draft 4 validators.

    ``$ref``s are inlined; ``nullable: true`` becomes ``anyOf [null, schema]``; ``oneOf``
    becomes ``anyOf``; ``format: uint64`` adds ``minimum: 0``; every object schema with
    ``properties`` and no ``additionalProperties`` gets ``additionalProperties: false``.
    Draft 4 is used because its ``integer`` rejects ``1.0`` and ``true``, as Go does.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        with open(self.path, encoding="utf-8") as handle:
            self.document = yaml.load(handle, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        self._schemas: dict[str, Any] = self.document["components"]["schemas"]
        self._validators: dict[str, Draft4Validator] = {}

    _cache: ClassVar[dict[tuple[str, float], OpenAPISpec]] = {}

    @classmethod
    def load(cls, path: Path | str) -> OpenAPISpec:
        """One parsed document (and its validators) per file version, shared by all fakes."""
        resolved = Path(path).resolve()
        key = (str(resolved), resolved.stat().st_mtime)
        if key not in cls._cache:
            cls._cache[key] = cls(resolved)
        return cls._cache[key]

    def has_operation(self, method: str, template: str) -> bool:
        return method.lower() in self.document["paths"].get(template, {})

    def _convert(self, schema: Any, depth: int = 0) -> Any:
        if depth > 40:
            raise ValueError("schema nesting too deep (recursive $ref?)")
        if not isinstance(schema, dict):
            return schema
        nullable = bool(schema.get("nullable"))
        if "$ref" in schema:
            name = schema["$ref"].rsplit("/", 1)[-1]
            out = self._convert(self._schemas[name], depth + 1)
        else:
            out = {}
            for key in ("type", "enum", "required", "minimum", "maximum", "format",
                        "minItems", "maxItems", "pattern", "minLength", "maxLength"):
                if key in schema:
                    out[key] = copy.deepcopy(schema[key])
            if "items" in schema:
                out["items"] = self._convert(schema["items"], depth + 1)
            if "properties" in schema:
                out["properties"] = {k: self._convert(v, depth + 1)
                                     for k, v in schema["properties"].items()}
                if "additionalProperties" not in schema:
                    out["additionalProperties"] = False
            if isinstance(schema.get("additionalProperties"), dict):
                out["additionalProperties"] = self._convert(schema["additionalProperties"], depth + 1)
            elif "additionalProperties" in schema:
                out["additionalProperties"] = schema["additionalProperties"]
            for key, target in (("allOf", "allOf"), ("anyOf", "anyOf"), ("oneOf", "anyOf")):
                if key in schema:
                    out[target] = [self._convert(s, depth + 1) for s in schema[key]]
            if schema.get("format") == "uint64":
                out["minimum"] = 0
        if nullable:
            return {"anyOf": [{"type": "null"}, out]}
        return out

    def validator(self, schema: dict[str, Any]) -> Draft4Validator:
        key = json.dumps(schema, sort_keys=True)
        if key not in self._validators:
            self._validators[key] = Draft4Validator(self._convert(schema))
        return self._validators[key]

    def schema_named(self, name: str) -> dict[str, Any]:
        return {"$ref": f"#/components/schemas/{name}"}

    def request_schema(self, method: str, template: str) -> dict[str, Any] | None:
        op = self.document["paths"][template][method.lower()]
        body = op.get("requestBody")
        if body is None:
            return None
        return body["content"]["application/json"]["schema"]

    def response_schema(self, method: str, template: str, status: int) -> dict[str, Any]:
        op = self.document["paths"][template][method.lower()]
        responses = op.get("responses", {})
        if str(status) not in responses:
            raise AssertionError(
                f"fake MediaMTX bug: {method} {template} answered {status}, which the OpenAPI "
                f"document does not declare (declared: {sorted(responses)})")
        return responses[str(status)]["content"]["application/json"]["schema"]

    def check_response(self, method: str, template: str, status: int, body: Any) -> None:
        schema = self.response_schema(method, template, status)
        errors = list(self.validator(schema).iter_errors(body))
        if errors:
            err = best_match(errors)
            raise AssertionError(
                f"fake MediaMTX bug: {method} {template} {status} response does not match "
                f"openapi.yaml at {list(err.absolute_path)}: {err.message}")

    def coerce_nulls(self, name: str, values: dict[str, Any]) -> dict[str, Any]:
        """YAML leaves ``key:`` as null; MediaMTX reads it as the zero value of the Go type."""
        return self._coerce(self._schemas[name], values)

    def _coerce(self, schema: dict[str, Any], value: Any) -> Any:
        while "$ref" in schema:
            schema = self._schemas[schema["$ref"].rsplit("/", 1)[-1]]
        if value is None:
            if schema.get("nullable"):
                return None
            return {"string": "", "array": [], "boolean": False, "integer": 0,
                    "number": 0, "object": {}}.get(schema.get("type", "string"), "")
        if isinstance(value, dict):
            props = schema.get("properties", {})
            return {k: self._coerce(props.get(k, {}), v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._coerce(schema.get("items", {}), v) for v in value]
        return value


_GO_JSON_TYPES = {str: "string", bool: "bool", int: "number", float: "number", list: "array",
                  dict: "object", type(None): "null"}


def _go_type(schema: dict[str, Any]) -> str:
    kind = schema.get("type")
    if kind == "integer":
        return "uint64" if schema.get("format") == "uint64" else "int64"
    return {"boolean": "bool", "number": "float64", "string": "string", "array": "[]interface {}",
            "object": "struct"}.get(str(kind), str(kind))


def _go_error(err: Any, struct: str) -> str:
    """A Go ``encoding/json``-like text for one jsonschema error."""
    where = ".".join(str(p) for p in err.absolute_path)
    if err.validator == "additionalProperties":
        allowed = set(err.schema.get("properties", {}))
        unknown = sorted(set(err.instance) - allowed)
        return f'json: unknown field "{unknown[0] if unknown else "?"}"'
    if err.validator == "type":
        got = _GO_JSON_TYPES.get(type(err.instance), "value")
        if got == "number" and isinstance(err.instance, float) and err.validator_value == "integer":
            got = f"number {err.instance}"
        if where:
            return (f"json: cannot unmarshal {got} into Go struct field {struct}.{where} "
                    f"of type {_go_type(err.schema)}")
        return f"json: cannot unmarshal {got} into Go value of type {struct}"
    if err.validator == "enum":
        return f"invalid value '{err.instance}' for field '{where}'"
    if err.validator == "minimum":
        return (f"json: cannot unmarshal number {err.instance} into Go struct field "
                f"{struct}.{where} of type uint64")
    return f"json: {where}: {err.message}"


# --------------------------------------------------------------------------- state

class RecordedRequest(NamedTuple):
    method: str
    path: str          # the request URI as sent (path and query)
    body: Any          # parsed JSON, raw bytes if not JSON, None if empty


@dataclass
class Violation:
    """A request MediaMTX would have rejected with 400 because of its body."""
    method: str
    path: str
    body: Any
    error: str
    kind: str          # "json" (undecodable / schema), "semantic" (conf.Path.validate rule)


@dataclass
class _Live:
    ready: bool = False
    since: float = 0.0
    readers: list[dict[str, str]] = field(default_factory=list)
    bytes_received: int = 0
    bytes_sent: int = 0
    source_type: str = "rtspSession"
    source_id: str = ""
    tracks: tuple[str, ...] = ("H264",)


class _APIError(Exception):
    def __init__(self, status: int, message: str, violation: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.violation = violation


class _Ok:
    """Marker: a successful write (``{"status":"ok"}`` or an empty body by version)."""


_OK = _Ok()


@dataclass
class _Route:
    method: str
    template: str
    pattern: re.Pattern[str]
    handler: Callable[..., tuple[int, Any]]
    min_version: tuple[int, int, int] = (0, 0, 0)


def _compile(template: str) -> re.Pattern[str]:
    # gin's catch-all "*name": the rest of the URL, slashes included.
    head, sep, _ = template.partition("{name}")
    return re.compile("^" + re.escape(head) + ("(?P<name>.*)" if sep else "") + "$")


def _is_regexp_name(name: str) -> bool:
    return name in ("all", "all_others") or name.startswith("~")


def _name_matches(conf_name: str, path_name: str) -> bool:
    if conf_name in ("all", "all_others"):
        return True
    if conf_name.startswith("~"):
        try:
            return re.search(conf_name[1:], path_name) is not None
        except re.error:
            return False
    return conf_name == path_name


# --------------------------------------------------------------------------- the fake

class FakeMediaMTX(Resource):
    """MediaMTX's v3 control API, in memory. See the module docstring."""

    isLeaf = True

    def __init__(self, openapi_path: Path | str | None = None, *,
                 version: str = DEFAULT_VERSION, clock: Any = None,
                 yaml_paths: dict[str, dict[str, Any]] | None = None,
                 global_conf: dict[str, Any] | None = None,
                 path_defaults: dict[str, Any] | None = None,
                 defaults_yaml: Path | str | None = None) -> None:
        super().__init__()
        self.spec = OpenAPISpec.load(openapi_path if openapi_path is not None else default_openapi_path())
        self.version = version
        self._version = parse_version(version)
        if clock is None:
            from twisted.internet import reactor as clock
        self.clock = clock
        self.requests: list[RecordedRequest] = []
        self.violations: list[Violation] = []
        self.path_reloads: list[tuple[str, tuple[str, ...]]] = []
        self.restarts = 0
        #: responses that failed the OpenAPI check (each also raised AssertionError -> 500)
        self.fake_bugs: list[str] = []
        self.responses_validated = 0
        self._servers: list[FakeMediaMTXServer] = []
        self._pending: set[Any] = set()
        self._down = False
        self._delay = 0.0
        self._malformed = False
        #: called after every configuration change and restart (a test's stand-in recorder
        #: watches ``record`` flags through :meth:`recording_paths`)
        self.config_observers: list[Any] = []

        base_global, base_defaults = self._load_defaults(defaults_yaml)
        base_global.update({"api": True, "apiAddress": "127.0.0.1:9997"})
        base_global.update(global_conf or {})
        base_defaults.update(path_defaults or {})
        for struct, conf in (("GlobalConf", base_global), ("PathConf", base_defaults)):
            error = self._check_body(self.spec.schema_named(struct), conf, struct)
            if error:
                raise ValueError(f"{struct} defaults do not match openapi.yaml: {error}")
        self._yaml_global = base_global
        self._yaml_defaults = base_defaults
        self._yaml_paths: dict[str, dict[str, Any]] = copy.deepcopy({"all_others": {}} if yaml_paths is None else yaml_paths)
        for name, partial in self._yaml_paths.items():
            error = self._check_body(self.spec.schema_named("PathConf"), partial, "PathConf")
            if error:
                raise ValueError(f"YAML path {name!r}: {error}")
        error = self._validate_all(base_global, base_defaults, self._yaml_paths)
        if error:
            raise ValueError(f"MediaMTX would refuse to start with this YAML: {error}")

        self._routes = self._build_routes()
        self._reset_state()

    # ----------------------------------------------------------------- set-up helpers

    def _load_defaults(self, defaults_yaml: Path | str | None) -> tuple[dict[str, Any], dict[str, Any]]:
        path = Path(defaults_yaml) if defaults_yaml else self.spec.path.with_name("mediamtx.yml")
        if not path.exists():
            return {"api": True, "rtsp": True, "rtspAddress": ":8554", "hls": True,
                    "hlsAddress": ":8888", "webrtc": True, "webrtcAddress": ":8889",
                    "playback": False}, {
                "source": "publisher", "sourceOnDemand": False, "record": False,
                "recordPath": "./recordings/%path/%Y-%m-%d_%H-%M-%S-%f", "recordFormat": "fmp4",
                "recordPartDuration": "1s", "recordSegmentDuration": "1h",
                "recordDeleteAfter": "1d", "runOnDemand": "", "runOnDemandRestart": False,
                "runOnDemandStartTimeout": "10s", "runOnDemandCloseAfter": "10s"}
        with open(path, encoding="utf-8") as handle:
            doc = yaml.load(handle, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        defaults = self.spec.coerce_nulls("PathConf", doc.pop("pathDefaults", {}) or {})
        doc.pop("paths", None)
        return self.spec.coerce_nulls("GlobalConf", doc), defaults

    def _build_routes(self) -> list[_Route]:
        table = [
            ("GET", "/v3/info", self._info, (1, 15, 2)),
            ("GET", "/v3/config/global/get", self._global_get, (0, 0, 0)),
            ("PATCH", "/v3/config/global/patch", self._global_patch, (0, 0, 0)),
            ("GET", "/v3/config/pathdefaults/get", self._defaults_get, (0, 0, 0)),
            ("PATCH", "/v3/config/pathdefaults/patch", self._defaults_patch, (0, 0, 0)),
            ("GET", "/v3/config/paths/list", self._conf_list, (0, 0, 0)),
            ("GET", "/v3/config/paths/get/{name}", self._conf_get, (0, 0, 0)),
            ("POST", "/v3/config/paths/add/{name}", self._conf_add, (0, 0, 0)),
            ("PATCH", "/v3/config/paths/patch/{name}", self._conf_patch, (0, 0, 0)),
            ("POST", "/v3/config/paths/replace/{name}", self._conf_replace, (0, 0, 0)),
            ("DELETE", "/v3/config/paths/delete/{name}", self._conf_delete, (0, 0, 0)),
            ("GET", "/v3/paths/list", self._paths_list, (0, 0, 0)),
            ("GET", "/v3/paths/get/{name}", self._paths_get, (0, 0, 0)),
            ("GET", "/v3/recordings/list", self._rec_list, (0, 0, 0)),
            ("GET", "/v3/recordings/get/{name}", self._rec_get, (0, 0, 0)),
            ("DELETE", "/v3/recordings/deletesegment", self._rec_delete, (0, 0, 0)),
        ]
        routes = []
        for method, template, handler, min_version in table:
            if not self.spec.has_operation(method, template):
                raise AssertionError(f"fake MediaMTX bug: {method} {template} is not in openapi.yaml")
            routes.append(_Route(method, template, _compile(template), handler, min_version))
        return routes

    def _reset_state(self) -> None:
        self._global = copy.deepcopy(self._yaml_global)
        self._defaults = copy.deepcopy(self._yaml_defaults)
        self._paths: dict[str, dict[str, Any]] = copy.deepcopy(self._yaml_paths)
        self._live: dict[str, _Live] = {}
        self._recordings: dict[str, list[str]] = {}
        self._started = self.clock.seconds()

    # ----------------------------------------------------------------- test controls

    def outage(self) -> defer.Deferred[None]:
        """Stop answering: listening ports close (connection refused), open connections drop.
        Without a server (StubTreq), every request's connection is aborted."""
        self._down = True
        return defer.gatherResults([s._pause() for s in self._servers]).addCallback(lambda _: None)

    def recover(self) -> None:
        self._down = False
        for server in self._servers:
            server._resume()

    @property
    def is_down(self) -> bool:
        return self._down

    def slow(self, seconds: float) -> None:
        """Delay every answer by ``seconds`` on the injected clock (0 turns it off). The change a
        write makes happens at once; only the answer is late (as with a slow network)."""
        self._delay = float(seconds)

    def malformed(self, enabled: bool = True) -> None:
        """Answer every request with 200 and a body that is not JSON (and change nothing)."""
        self._malformed = enabled

    def restart(self) -> None:
        """MediaMTX restarted: API-made paths and path-default patches are gone, YAML paths are
        back as in the YAML, nothing is live, no recordings are known, ``started`` changes."""
        self.restarts += 1
        recordings = self._recordings
        self._reset_state()
        self._recordings = recordings  # files on disk survive a restart
        self._notify_observers()

    def set_live(self, name: str, ready: bool = True, readers: int | list[str] = 2,
                 bytes_sent: int | None = None, bytes_received: int | None = None,
                 source_type: str = "rtspSession", tracks: tuple[str, ...] = ("H264",)) -> None:
        """Simulate a publisher on ``name`` (which a configuration must match) with readers.
        ``readers`` is a count (rtspSession readers) or a list of reader types."""
        if self._conf_for(name) is None:
            raise KeyError(f"no path configuration matches {name!r}; MediaMTX would refuse it")
        live = self._live.get(name) or _Live()
        if ready and not live.ready:
            live.since = self.clock.seconds()
            live.source_id = str(uuid.uuid4())
        live.ready = ready
        types = ["rtspSession"] * readers if isinstance(readers, int) else list(readers)
        live.readers = [{"type": t, "id": str(uuid.uuid4())} for t in types] if ready else []
        if bytes_sent is not None:
            live.bytes_sent = bytes_sent
        if bytes_received is not None:
            live.bytes_received = bytes_received
        live.source_type = source_type
        live.tracks = tuple(tracks)
        self._live[name] = live

    def add_recording(self, name: str, *starts: str) -> None:
        """Make MediaMTX's recordings endpoints list segments (RFC 3339 start times)."""
        self._recordings.setdefault(name, []).extend(starts)

    def path_config(self, name: str) -> dict[str, Any] | None:
        """The effective configuration of ``name`` (defaults merged), or None."""
        return self._effective(name) if name in self._paths else None

    def api_paths(self) -> list[str]:
        return sorted(n for n in self._paths if n not in self._yaml_paths)

    def requests_to(self, method: str, prefix: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == method and r.path.startswith(prefix)]

    # ----------------------------------------------------------------- validation

    def _check_body(self, schema: dict[str, Any], body: Any, struct: str) -> str | None:
        errors = list(self.spec.validator(schema).iter_errors(body))
        if errors:
            return _go_error(best_match(errors), struct)
        if isinstance(body, dict):
            for key in sorted(DURATION_FIELDS & set(body)):
                value = body[key]
                if isinstance(value, str) and value != "0" and not _GO_DURATION.match(value):
                    return f'time: invalid duration "{value}"'
        return None

    def _validate_path(self, conf: dict[str, Any], name: str, global_conf: dict[str, Any]) -> str | None:
        """The client-reachable rules of MediaMTX's ``conf.Path.validate``."""
        regexp = _is_regexp_name(name)
        if not regexp:
            if name == "":
                return f"invalid path name '{name}': cannot be empty"
            if name.startswith("/"):
                return f"invalid path name '{name}': can't begin with a slash"
            if name.endswith("/"):
                return f"invalid path name '{name}': can't end with a slash"
            if not _PATH_NAME.match(name):
                return (f"invalid path name '{name}': can contain only alphanumeric characters, "
                        "underscore, dot, tilde, minus, slash, colon")
        elif name.startswith("~"):
            try:
                re.compile(name[1:])
            except re.error:
                return f"invalid regular expression: {name[1:]}"
        source = conf.get("source", "publisher")
        if source not in ("publisher", "redirect") and regexp and not conf.get("sourceOnDemand"):
            return ("a path with a regular expression (or path 'all') and a static source"
                    " must have 'sourceOnDemand' set to true")
        if source not in ("publisher", "redirect", "rpiCamera") and not source.startswith(_SOURCE_PREFIXES):
            return f"invalid source: '{source}'"
        if conf.get("sourceOnDemand") and source == "publisher":
            return "'sourceOnDemand' is useless when source is 'publisher'"
        if global_conf.get("playback"):
            record_path = conf.get("recordPath", "")
            if not all(e in record_path for e in _PLAYBACK_ELEMENTS):
                return (f"record path '{record_path}' is missing one of the mandatory elements"
                        " for the playback server to work: %Y %m %d %H %M %S %f")
        if source == "redirect" and not conf.get("sourceRedirect"):
            return "source redirect must be filled"
        if conf.get("runOnInit") and regexp:
            return ("a path with a regular expression (or path 'all') does not support option "
                    "'runOnInit'; use another path")
        if (conf.get("runOnDemand") or conf.get("runOnUnDemand")) and source != "publisher":
            return "'runOnDemand' and 'runOnUnDemand' can be used only when source is 'publisher'"
        return None

    def _validate_all(self, global_conf: dict[str, Any], defaults: dict[str, Any],
                      paths: dict[str, dict[str, Any]]) -> str | None:
        for name in sorted(paths):
            error = self._validate_path({**defaults, **paths[name]}, name, global_conf)
            if error:
                return error
        return None

    # ----------------------------------------------------------------- state helpers

    def _effective(self, name: str, defaults: dict[str, Any] | None = None,
                   paths: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
        defaults = self._defaults if defaults is None else defaults
        paths = self._paths if paths is None else paths
        return {**copy.deepcopy(defaults), **copy.deepcopy(paths[name]), "name": name}

    def _conf_for(self, path_name: str) -> str | None:
        if path_name in self._paths:
            return path_name
        for conf_name in sorted(self._paths):
            if conf_name != "all_others" and _name_matches(conf_name, path_name):
                return conf_name
        return "all_others" if "all_others" in self._paths else None

    def _commit(self, global_conf: dict[str, Any], defaults: dict[str, Any],
                paths: dict[str, dict[str, Any]]) -> None:
        """Validate the whole candidate configuration, then apply it with hot-reload rules."""
        error = self._validate_all(global_conf, defaults, paths)
        if error:
            raise _APIError(400, error, "semantic")
        hot = (lambda k: k == "record") if self._version < (1, 15, 1) else (lambda k: k.startswith("record"))
        for name, live in list(self._live.items()):
            old_conf = self._conf_for(name)
            old = self._effective(old_conf) if old_conf else None
            self_paths, self_defaults = self._paths, self._defaults
            self._paths, self._defaults = paths, defaults
            new_conf = self._conf_for(name)
            new = self._effective(new_conf) if new_conf else None
            self._paths, self._defaults = self_paths, self_defaults
            if new is None:
                del self._live[name]
                self.path_reloads.append((name, ("<deleted>",)))
                continue
            changed: tuple[str, ...]
            if old is None or new_conf != old_conf:
                changed = ("<conf>",)
            else:
                changed = tuple(sorted(k for k in set(old) | set(new)
                                       if old.get(k) != new.get(k) and not hot(k)))
            if changed:
                self.path_reloads.append((name, changed))
                if live.ready:
                    self._live[name] = _Live(bytes_received=live.bytes_received,
                                             bytes_sent=live.bytes_sent)
        self._global, self._defaults, self._paths = global_conf, defaults, paths
        self._notify_observers()

    def _notify_observers(self) -> None:
        for observer in list(self.config_observers):
            observer()

    def recording_paths(self) -> dict[str, str]:
        """Path name → effective ``recordPath`` of every configured path with ``record`` on."""
        found: dict[str, str] = {}
        for name in self._paths:
            if name == "all_others":
                continue
            conf = self._effective(name)
            if conf.get("record"):
                found[name] = str(conf.get("recordPath", ""))
        return found

    def _path_object(self, name: str) -> dict[str, Any]:
        live = self._live.get(name) or _Live()
        since = _rfc3339(live.since) if live.ready else None
        obj: dict[str, Any] = {
            "name": name,
            "confName": self._conf_for(name) or name,
            "source": {"type": live.source_type, "id": live.source_id} if live.ready else None,
            "ready": live.ready,
            "readyTime": since,
            "tracks": list(live.tracks) if live.ready else [],
            "bytesReceived": live.bytes_received,
            "bytesSent": live.bytes_sent,
            "readers": copy.deepcopy(live.readers),
        }
        if self._version >= (1, 16, 0):
            obj.update(available=live.ready, availableTime=since, online=live.ready, onlineTime=since)
        if self._version >= (1, 17, 0):
            obj.update(inboundBytes=live.bytes_received, outboundBytes=live.bytes_sent,
                       inboundFramesInError=0,
                       tracks2=[{"codec": t, "codecProps": None} for t in live.tracks] if live.ready else [])
        return obj

    def _live_names(self) -> list[str]:
        names = {n for n in self._paths if not _is_regexp_name(n)}
        names |= {n for n in self._live if self._conf_for(n) is not None}
        return sorted(names)

    @staticmethod
    def _paginate(items: list[Any], query: dict[str, list[str]]) -> dict[str, Any]:
        def number(key: str, default: int) -> int:
            raw = query.get(key, [""])[0]
            if raw == "":
                return default
            if not raw.isdigit() or int(raw) >= 2 ** 31:
                raise _APIError(400, f'strconv.ParseUint: parsing "{raw}": invalid syntax')
            return int(raw)

        per_page = number("itemsPerPage", 100)
        page = number("page", 0)
        if per_page == 0:
            raise _APIError(400, "invalid items per page")
        total = len(items)
        page_count = 0 if total == 0 else -(-total // per_page)
        start = min(page * per_page, total)
        return {"itemCount": total, "pageCount": page_count,
                "items": items[start:start + per_page]}

    # ----------------------------------------------------------------- handlers

    def _info(self, req: _Request) -> tuple[int, Any]:
        return 200, {"version": self.version, "started": _rfc3339(self._started)}

    def _global_get(self, req: _Request) -> tuple[int, Any]:
        return 200, copy.deepcopy(self._global)

    def _global_patch(self, req: _Request) -> tuple[int, Any]:
        body = req.json_body("GlobalConf")
        self._commit({**self._global, **body}, self._defaults, self._paths)
        return 200, _OK

    def _defaults_get(self, req: _Request) -> tuple[int, Any]:
        return 200, copy.deepcopy(self._defaults)

    def _defaults_patch(self, req: _Request) -> tuple[int, Any]:
        body = req.json_body("PathConf")
        self._commit(self._global, {**self._defaults, **body}, self._paths)
        return 200, _OK

    def _conf_list(self, req: _Request) -> tuple[int, Any]:
        return 200, self._paginate([self._effective(n) for n in sorted(self._paths)], req.query)

    def _conf_get(self, req: _Request) -> tuple[int, Any]:
        name = req.name()
        if name not in self._paths:
            raise _APIError(404, "path configuration not found")
        return 200, self._effective(name)

    def _conf_add(self, req: _Request) -> tuple[int, Any]:
        name = req.name()
        body = req.json_body("PathConf")
        if name in self._paths:
            raise _APIError(400, "path already exists")
        self._commit(self._global, self._defaults, {**self._paths, name: body})
        return 200, _OK

    def _conf_patch(self, req: _Request) -> tuple[int, Any]:
        name = req.name()
        body = req.json_body("PathConf")
        if name not in self._paths:
            raise _APIError(404, "path not found")
        self._commit(self._global, self._defaults, {**self._paths, name: {**self._paths[name], **body}})
        return 200, _OK

    def _conf_replace(self, req: _Request) -> tuple[int, Any]:
        name = req.name()
        body = req.json_body("PathConf")
        self._commit(self._global, self._defaults, {**self._paths, name: body})
        return 200, _OK

    def _conf_delete(self, req: _Request) -> tuple[int, Any]:
        name = req.name()
        if name not in self._paths:
            raise _APIError(404, "path not found")
        paths = dict(self._paths)
        del paths[name]
        self._commit(self._global, self._defaults, paths)
        return 200, _OK

    def _paths_list(self, req: _Request) -> tuple[int, Any]:
        return 200, self._paginate([self._path_object(n) for n in self._live_names()], req.query)

    def _paths_get(self, req: _Request) -> tuple[int, Any]:
        name = req.name()
        if name not in self._live_names():
            raise _APIError(404, "path not found")
        return 200, self._path_object(name)

    def _recording(self, name: str) -> dict[str, Any]:
        starts = sorted(self._recordings.get(name, []), key=lambda s: datetime.fromisoformat(s))
        return {"name": name, "segments": [{"start": s} for s in starts]}

    def _rec_list(self, req: _Request) -> tuple[int, Any]:
        names = sorted(n for n, segs in self._recordings.items() if segs)
        return 200, self._paginate([self._recording(n) for n in names], req.query)

    def _rec_get(self, req: _Request) -> tuple[int, Any]:
        name = req.name()
        if self._conf_for(name) is None or not self._recordings.get(name):
            raise _APIError(404, "no recordings found")
        return 200, self._recording(name)

    def _rec_delete(self, req: _Request) -> tuple[int, Any]:
        name = req.query.get("path", [""])[0]
        raw_start = req.query.get("start", [""])[0]
        if not name:
            raise _APIError(400, "invalid 'path' parameter")
        try:
            start = datetime.fromisoformat(raw_start)
            if start.tzinfo is None:
                raise ValueError(raw_start)
        except ValueError:
            raise _APIError(400, "invalid 'start' parameter") from None
        segments = self._recordings.get(name, [])
        for existing in segments:
            if datetime.fromisoformat(existing) == start:
                segments.remove(existing)
                return 200, _OK
        raise _APIError(404, "recording segment not found")

    # ----------------------------------------------------------------- HTTP plumbing

    def render(self, request: Any) -> Any:
        method = request.method.decode("ascii")
        uri = request.uri.decode("utf-8", "replace")
        raw = request.content.read() if request.content is not None else b""
        parsed: Any = None
        if raw:
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = raw
        self.requests.append(RecordedRequest(method, uri, parsed))

        if self._down:
            request.transport.abortConnection()
            return NOT_DONE_YET
        if self._malformed:
            return self._deliver(request, 200, b"<html><body>not json", "application/json; charset=utf-8")

        split = urlsplit(uri)
        path = split.path
        for route in self._routes:
            match = route.pattern.match(path)
            if match and route.method == method and self._version >= route.min_version:
                break
        else:
            return self._deliver(request, 404, _NOT_FOUND_BODY, "text/plain")

        req = _Request(self, method, uri, route, match, parse_qs(split.query, keep_blank_values=True), raw)
        try:
            status, body = route.handler(req)
        except _APIError as err:
            if err.violation:
                self.violations.append(Violation(method, uri, parsed, err.message, err.violation))
            status, body = err.status, {"error": err.message}
            if self._version >= (1, 15, 5):
                body = {"status": "error", "error": err.message}
        if body is _OK:
            if self._version < (1, 15, 5):
                return self._deliver(request, status, b"", None)
            body = {"status": "ok"}
        try:
            self.spec.check_response(method, route.template, status, body)
        except AssertionError as exc:
            self.fake_bugs.append(str(exc))
            raise
        self.responses_validated += 1
        data = json.dumps(body, separators=(",", ":")).encode("utf-8")
        return self._deliver(request, status, data, "application/json; charset=utf-8")

    def _deliver(self, request: Any, status: int, data: bytes, content_type: str | None) -> Any:
        def write() -> None:
            request.setResponseCode(status)
            if content_type:
                request.setHeader(b"content-type", content_type.encode("ascii"))
            request.setHeader(b"content-length", str(len(data)).encode("ascii"))

        if self._delay <= 0:
            write()
            return data

        gone: list[bool] = []

        def send() -> None:
            self._pending.discard(call)
            if gone:
                return
            write()
            request.write(data)
            request.finish()

        def lost(_: Any) -> None:
            gone.append(True)
            if call.active():
                call.cancel()
            self._pending.discard(call)

        call = self.clock.callLater(self._delay, send)
        self._pending.add(call)
        request.notifyFinish().addErrback(lost)
        return NOT_DONE_YET

    def cancel_pending(self) -> None:
        for call in list(self._pending):
            if call.active():
                call.cancel()
        self._pending.clear()


class _Request:
    def __init__(self, fake: FakeMediaMTX, method: str, uri: str, route: _Route,
                 match: re.Match[str], query: dict[str, list[str]], raw: bytes) -> None:
        self.fake, self.method, self.uri, self.route = fake, method, uri, route
        self.match, self.query, self.raw = match, query, raw

    def name(self) -> str:
        name = unquote(self.match.group("name"))
        if name == "":
            raise _APIError(400, "invalid name")
        return name

    def json_body(self, struct: str) -> dict[str, Any]:
        if not self.raw.strip():
            raise _APIError(400, "EOF", "json")
        try:
            body = json.loads(self.raw)
        except ValueError as exc:
            raise _APIError(400, f"invalid character in JSON: {exc}", "json") from None
        schema = self.fake.spec.request_schema(self.method, self.route.template)
        assert schema is not None, f"{self.route.template} has no request body in openapi.yaml"
        error = self.fake._check_body(schema, body, struct)
        if error:
            raise _APIError(400, error, "json")
        return body


# --------------------------------------------------------------------------- real listening port

class FakeMediaMTXServer:
    """Serves a :class:`FakeMediaMTX` on a real TCP port; ``fake.outage()`` closes the port
    (new connections are refused) and drops open connections, ``fake.recover()`` listens again
    on the same port number."""

    def __init__(self, fake: FakeMediaMTX, interface: str = "127.0.0.1") -> None:
        self.fake = fake
        self.interface = interface
        self.port_number: int | None = None
        self._reactor: Any = None
        self._listening: Any = None
        site = Site(fake)
        site.noisy = False
        self._factory = WrappingFactory(site)
        self._factory.noisy = False

    @property
    def url(self) -> str:
        return f"http://{self.interface}:{self.port_number}"

    def start(self, reactor: Any = None, port: int = 0) -> Any:
        if reactor is None:
            from twisted.internet import reactor
        self._reactor = reactor
        self._listening = reactor.listenTCP(port, self._factory, interface=self.interface)
        self.port_number = self._listening.getHost().port
        self.fake._servers.append(self)
        if self.fake.is_down:
            self._listening.stopListening()
            self._listening = None
        return self._listening

    def _drop_connections(self) -> None:
        for protocol in list(self._factory.protocols):
            if protocol.transport is not None:
                protocol.transport.abortConnection()

    def _pause(self) -> defer.Deferred[Any]:
        self._drop_connections()
        listening, self._listening = self._listening, None
        if listening is None:
            return defer.succeed(None)
        return defer.maybeDeferred(listening.stopListening)

    def _resume(self) -> None:
        if self._listening is None and self._reactor is not None:
            self._listening = self._reactor.listenTCP(self.port_number, self._factory,
                                                      interface=self.interface)

    def stop(self) -> defer.Deferred[Any]:
        if self in self.fake._servers:
            self.fake._servers.remove(self)
        self.fake.cancel_pending()
        return self._pause()
