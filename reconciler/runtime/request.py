"""Parse and validate a prediction request against the spec's input signature.

Shipped in every Bento; standard library and numpy only. Accepts ``{"instances":
[[...], ...]}`` or one row (``"instance"``); a row is a list of values or an object keyed
by the signature's feature names; every failure is a :class:`BadRequest` naming the field.
Accepted bodies in detail: ``docs/runtime.md``.
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any

import numpy as np

_NUMPY = {
    "float32": np.float32,
    "float64": np.float64,
    "int32": np.int32,
    "int64": np.int64,
    "bool": np.bool_,
}


class BadRequest(Exception):
    """A request the service refuses (HTTP ``status``, 400 unless said otherwise).

    Attributes:
        field: the offending field (``instances[0][3]``) or ``body``.
        message: what is wrong and what would be valid.
        status: HTTP status code (400, or 413 for a body over the size limit).
    """

    def __init__(self, field: str, message: str, status: int = 400) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.status = status

    def to_dict(self) -> dict[str, Any]:
        """JSON body of the error response: ``{"error", "field", "status"}``."""
        return {"error": str(self), "field": self.field, "status": self.status}


def parse_json(body: bytes) -> Any:
    """Decode a request body as UTF-8 JSON.

    Raises:
        BadRequest: empty body, not UTF-8, malformed JSON (with line and column), JSON
            nested too deeply, or an integer with more digits than Python converts
            (4300 by default; the field is its JSON path, e.g. ``instances[0][0]``).
    """
    if not body.strip():
        raise BadRequest("body", 'empty body; expected JSON like {"instances": [[...], ...]}')
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest("body", f"not UTF-8 text (byte {exc.start}); expected JSON") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadRequest(
            "body", f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    except RecursionError:
        raise BadRequest("body", "JSON nested too deeply") from None
    except ValueError:  # int max str digits: a plain ValueError, not a JSONDecodeError
        raise _too_long(text) from None


class _LongInt:
    """Stands in for an integer literal too long to convert (see :func:`_too_long`)."""

    __slots__ = ("digits",)

    def __init__(self, digits: int) -> None:
        self.digits = digits


def _too_long(text: str) -> BadRequest:
    """The BadRequest for a body whose ``json.loads`` failed on an over-long integer.

    Parses ``text`` again with long integer literals left unconverted and names the JSON
    path of the first one (``instances[0][3]``; ``body`` for a bare number).
    """
    limit = sys.get_int_max_str_digits()

    def parse_int(literal: str) -> int | _LongInt:
        digits = len(literal) - literal.startswith("-")
        return _LongInt(digits) if limit and digits > limit else int(literal)

    try:
        doc = json.loads(text, parse_int=parse_int)
    except (ValueError, RecursionError) as exc:  # not expected: the same parse, minus ints
        return BadRequest("body", f"not valid JSON ({type(exc).__name__})")
    stack: list[tuple[str, Any]] = [("", doc)]
    while stack:  # depth first, in document order
        path, value = stack.pop()
        if isinstance(value, _LongInt):
            return BadRequest(
                path or "body",
                f"an integer of {value.digits} digits; at most {limit} digits are read, and "
                "no dtype holds a number of more than 309 digits (float64 ends near 1.8e308)",
            )
        if isinstance(value, list):
            stack.extend((f"{path}[{i}]", v) for i, v in reversed(list(enumerate(value))))
        elif isinstance(value, dict):
            items = [(f"{path}.{k}" if path else str(k), v) for k, v in value.items()]
            stack.extend(reversed(items))
    return BadRequest("body", "not valid JSON: a number could not be read")


class Signature:
    """The input signature (``spec.model.signature.inputs``) a request is checked against.

    Args:
        inputs: mapping with ``shape`` (``[-1, N]``), ``dtype`` (float32, float64, int32,
            int64, bool), optional ``names`` (N feature names) and ``allow_nan``.
        max_rows: the most rows one request may carry.
    """

    def __init__(self, inputs: dict, max_rows: int = 100_000) -> None:
        shape = list(inputs.get("shape") or [-1])
        self.width: int | None = shape[1] if len(shape) == 2 and shape[1] > 0 else None
        self.dtype = str(inputs.get("dtype", "float32"))
        self.np_dtype = _NUMPY[self.dtype]
        self.names: list[str] = list(inputs.get("names") or [])
        self._name_set = frozenset(self.names)
        self.allow_nan = bool(inputs.get("allow_nan", False))
        self.max_rows = max_rows
        # The JSON value types a row may hold without a value-by-value check (see array)
        self._plain = frozenset(
            {bool}
            if self.dtype == "bool"
            else {int}
            if self.dtype.startswith("int")
            else {float, int}
        )

    def _field(self, r: int, c: int) -> str:
        name = f" ({self.names[c]})" if c < len(self.names) else ""
        return f"instances[{r}][{c}]{name}"

    def _expected(self) -> str:
        if self.dtype == "bool":
            return "true or false"
        kind = "an integer" if self.dtype.startswith("int") else "a number"
        return f"{kind} ({self.dtype})"

    def rows(self, doc: Any) -> list[list]:
        """The request's rows (list of lists) after checking the envelope and the shape.

        A row is a list of values in the signature's order, or an object keyed by the
        signature's feature ``names`` (turned into that list: the keys' order does not
        matter).

        Raises:
            BadRequest: not an object, no ``instances``/``instance``, empty batch, a row
                that is not a list or has the wrong number of values, an object row when
                the signature names no features, or one whose keys are not exactly the
                feature names (the missing and unknown ones are named).
        """
        if not isinstance(doc, dict):
            raise BadRequest(
                "body", f'expected a JSON object {{"instances": [...]}}, got {_kind(doc)}'
            )
        if "instances" in doc:
            key, value = "instances", doc["instances"]
        elif "instance" in doc:
            key, value = "instance", doc["instance"]
        else:
            keys = ", ".join(sorted(map(str, doc))) or "none"
            raise BadRequest(
                "instances",
                f'missing; expected "instances": [[...], ...] or "instance": [...] '
                f"(keys sent: {keys})",
            )
        if not isinstance(value, list | dict):
            raise BadRequest(key, f"expected a list of rows, got {_kind(value)}")
        if not value:
            raise BadRequest(key, "empty batch; expected at least one row")
        width = self.width
        if isinstance(value, dict):  # one row keyed by name (as "instances": [1, 2, 3])
            rows = [self._by_name(key, value)]
        elif key == "instance" or not isinstance(value[0], list | dict):
            rows = [value]  # a single instance
            if width is not None and len(value) != width:
                raise BadRequest(
                    key, f"expected {width} values (shape [-1, {width}]), got {len(value)}"
                )
        else:
            rows = value
        if len(rows) > self.max_rows:
            raise BadRequest(key, f"{len(rows)} rows; at most {self.max_rows} per request")
        for r, row in enumerate(rows):
            if type(row) is dict:
                row = rows[r] = self._by_name(f"instances[{r}]", row)
            elif not isinstance(row, list):
                keyed = ", or an object keyed by feature name" if self.names else ""
                raise BadRequest(
                    f"instances[{r}]", f"expected a row (a list of values{keyed}), got {_kind(row)}"
                )
            if width is not None and len(row) != width:
                raise BadRequest(
                    f"instances[{r}]",
                    f"expected {width} values (shape [-1, {width}]), got {len(row)}",
                )
            if width is None and len(row) != len(rows[0]):
                raise BadRequest(
                    f"instances[{r}]",
                    f"expected {len(rows[0])} values like instances[0], got {len(row)}",
                )
        return rows

    def _by_name(self, field: str, row: dict) -> list:
        """The values of an object row in the order of the signature's ``names``.

        Raises:
            BadRequest: the signature names no features, or the object lacks some of
                them or has others (each listed, with the valid names).
        """
        names = self.names
        if not names:
            raise BadRequest(
                field,
                "an object row needs feature names, and this model's signature "
                "(spec.model.signature.inputs.names) has none; send the row as a list of "
                "values",
            )
        if len(row) == len(names):
            try:
                return [row[n] for n in names]
            except KeyError:
                pass  # some name is missing: reported below with the unknown ones
        missing = [n for n in names if n not in row]
        unknown = [str(k) for k in row if k not in self._name_set]
        parts = []
        if missing:
            parts.append(f"missing feature(s) {', '.join(missing)}")
        if unknown:
            parts.append(f"unknown feature(s) {', '.join(unknown)}")
        raise BadRequest(
            field,
            f"{'; '.join(parts)}; expected an object with exactly the signature's "
            f"{len(names)} feature names: {', '.join(names)}",
        )

    def array(self, rows: list[list]) -> np.ndarray:
        """The rows as a 2-D array of the signature's dtype, every value checked.

        Rows holding only JSON numbers of the dtype's kind (``float``/``int`` for float
        dtypes, ``int`` for int dtypes, ``bool`` for bool) are converted at once and
        checked as an array (finite, in range); anything else, and any array that fails,
        goes through :meth:`_check_values`, which names the first bad value. The result
        and the errors are the same either way (the loop was about 5 us of CPU for one
        row of 30 values).

        Raises:
            BadRequest: a value of the wrong type (string, list, object, bool for a
                number, fraction for an int), NaN/Infinity/null where not allowed, or a
                number out of the dtype's range.
        """
        plain = self._plain
        if not all(plain.issuperset(map(type, row)) for row in rows):
            self._check_values(rows)
            if self.allow_nan and float in plain:  # null means NaN
                rows = [[math.nan if v is None else v for v in row] for row in rows]
        try:
            with np.errstate(over="raise", invalid="raise"):
                arr = np.asarray(rows, dtype=self.np_dtype)
        except (OverflowError, FloatingPointError, ValueError):
            raise self._out_of_range(rows) from None
        if float in plain and not self.allow_nan and not np.isfinite(arr).all():
            self._check_values(rows)  # a NaN or Infinity that was sent is named
            raise self._out_of_range(rows)  # else a float32 overflow
        if arr.ndim != 2:
            arr = arr.reshape(len(rows), -1)
        return arr

    def _check_values(self, rows: list[list]) -> None:
        """Check every value of ``rows`` against the dtype, one by one (the slow path of
        :meth:`array`, which does the range checks).

        Raises:
            BadRequest: the first value of a wrong type, or NaN/Infinity/null where
                ``allow_nan`` is false, named by its field.
        """
        is_bool = self.dtype == "bool"
        is_int = self.dtype.startswith("int")
        for r, row in enumerate(rows):
            for c, v in enumerate(row):
                t = type(v)
                if t is float:
                    if (is_int and not v.is_integer()) or is_bool:
                        raise BadRequest(
                            self._field(r, c), f"expected {self._expected()}, got {v!r}"
                        )
                    if not self.allow_nan and not math.isfinite(v):
                        raise BadRequest(
                            self._field(r, c),
                            f"{v!r} is not allowed (signature allow_nan is false); "
                            f"expected {self._expected()}",
                        )
                elif t is int:
                    if is_bool:
                        raise BadRequest(self._field(r, c), f"expected true or false, got {v!r}")
                elif t is bool:
                    if not is_bool:
                        raise BadRequest(
                            self._field(r, c), f"expected {self._expected()}, got {json.dumps(v)}"
                        )
                elif v is None and self.allow_nan and not is_bool and not is_int:
                    continue
                else:
                    raise BadRequest(
                        self._field(r, c), f"expected {self._expected()}, got {_kind(v)}"
                    )

    def _out_of_range(self, rows: list[list]) -> BadRequest:
        """The BadRequest naming the first value that does not fit the dtype."""
        if self.dtype.startswith("int"):
            lo, hi = np.iinfo(self.np_dtype).min, np.iinfo(self.np_dtype).max
        else:
            lo, hi = -float(np.finfo(self.np_dtype).max), float(np.finfo(self.np_dtype).max)
        for r, row in enumerate(rows):
            for c, v in enumerate(row):
                if isinstance(v, bool) or not isinstance(v, int | float):
                    continue
                # ints compare exactly with floats; math.isfinite would overflow on an
                # int beyond float64 (10**400)
                if (isinstance(v, int) or math.isfinite(v)) and not lo <= v <= hi:
                    return BadRequest(
                        self._field(r, c),
                        f"{_number(v)} is out of range for {self.dtype} ({lo}..{hi})",
                    )
        return BadRequest("instances", f"a value is out of range for {self.dtype}")

    def parse(self, doc: Any) -> np.ndarray:
        """:meth:`rows` then :meth:`array`: the validated 2-D batch for a decoded body."""
        return self.array(self.rows(doc))


def _number(v: int | float) -> str:
    """``repr`` of a number, or ``an integer of N digits`` when that would be long."""
    if isinstance(v, int) and not -(10**30) < v < 10**30:
        return f"an integer of {len(str(abs(v)))} digits"
    return repr(v)


def _kind(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return json.dumps(v)
    if isinstance(v, str):
        shown = v if len(v) <= 20 else v[:20] + "..."
        return f"string {shown!r}"
    if isinstance(v, list):
        return "a list"
    if isinstance(v, dict):
        return "an object"
    return type(v).__name__


_JSON_TYPE = {
    "float32": {"type": "number", "format": "float"},
    "float64": {"type": "number", "format": "double"},
    "int32": {"type": "integer", "format": "int32"},
    "int64": {"type": "integer", "format": "int64"},
    "bool": {"type": "boolean"},
}


def openapi(signature: Signature, max_rows: int | None = None) -> dict:
    """The OpenAPI 3.0 ``paths`` and ``components.schemas`` of the prediction routes
    (``POST /predict``, ``POST /invocations``) for ``signature``, for the service's
    ``/docs.json`` (merged into BentoML's own document).

    A row is described both ways the service accepts it: an array of the signature's
    width and dtype (values in the order of ``names``) and, when the signature names its
    features, an object with exactly those keys. The example request uses the object
    form when names exist.

    Returns:
        ``{"paths": {...}, "schemas": {...}}``; the schemas are ``ModelopsRowArray``,
        ``ModelopsRowObject`` (with names only), ``ModelopsRow``,
        ``ModelopsPredictRequest``, ``ModelopsPredictResponse``, ``ModelopsError``.
    """
    value = dict(_JSON_TYPE[signature.dtype])
    if signature.allow_nan and signature.dtype.startswith("float"):
        value["nullable"] = True  # null is read as NaN
    order = f" in this order: {', '.join(signature.names)}" if signature.names else ""
    row_array: dict = {
        "type": "array",
        "items": value,
        "description": f"one row: the feature values{order}",
    }
    if signature.width is not None:
        row_array["minItems"] = row_array["maxItems"] = signature.width
    ref = "#/components/schemas/"
    schemas: dict = {"ModelopsRowArray": row_array}
    if signature.names:
        schemas["ModelopsRowObject"] = {
            "type": "object",
            "description": "one row: an object keyed by every feature name (no others)",
            "properties": {name: dict(value) for name in signature.names},
            "required": list(signature.names),
            "additionalProperties": False,
        }
        schemas["ModelopsRow"] = {
            "oneOf": [{"$ref": ref + "ModelopsRowArray"}, {"$ref": ref + "ModelopsRowObject"}]
        }
        zero = False if signature.dtype == "bool" else 0
        example_row: Any = {name: zero for name in signature.names}
    else:
        schemas["ModelopsRow"] = {"$ref": ref + "ModelopsRowArray"}
        example_row = [False if signature.dtype == "bool" else 0] * (signature.width or 1)
    schemas["ModelopsPredictRequest"] = {
        "type": "object",
        "description": 'rows under "instances", or one row under "instance"',
        "properties": {
            "instances": {
                "type": "array",
                "minItems": 1,
                "maxItems": max_rows or signature.max_rows,
                "items": {"$ref": ref + "ModelopsRow"},
            },
            "instance": {"$ref": ref + "ModelopsRow"},
        },
        "example": {"instances": [example_row]},
    }
    schemas["ModelopsPredictResponse"] = {
        "type": "object",
        "properties": {
            "predictions": {"type": "array", "items": {}, "description": "one per row"},
            "probabilities": {
                "type": "array",
                "items": {"type": "array", "items": {"type": "number"}},
                "description": "per row, one per class (classifiers that have them)",
            },
            "model_version": {"type": "string"},
        },
        "required": ["predictions", "model_version"],
    }
    schemas["ModelopsError"] = {
        "type": "object",
        "properties": {
            "error": {"type": "string", "description": "what is wrong and what is valid"},
            "field": {"type": "string", "description": "e.g. instances[0][3] or body"},
            "status": {"type": "integer"},
        },
    }

    def answer(description: str, schema: str) -> dict:
        return {
            "description": description,
            "content": {"application/json": {"schema": {"$ref": ref + schema}}},
        }

    def operation(summary: str, op_id: str) -> dict:
        return {
            "post": {
                "tags": ["Service APIs"],
                "summary": summary,
                "operationId": op_id,
                "parameters": [
                    {
                        "name": "X-Request-ID",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string"},
                        "description": "echoed back; kept with captured requests",
                    }
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": ref + "ModelopsPredictRequest"}}
                    },
                },
                "responses": {
                    "200": answer("predictions for every row", "ModelopsPredictResponse"),
                    "400": answer("the request does not match the signature", "ModelopsError"),
                    "413": answer("the body is over the size limit", "ModelopsError"),
                    "500": answer("the model failed", "ModelopsError"),
                },
            }
        }

    paths = {
        "/predict": operation("Predict", "predict"),
        "/invocations": operation("Predict (SageMaker's route)", "invocations"),
    }
    return {"paths": paths, "schemas": schemas}
