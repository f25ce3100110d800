"""Request schemas of the HTTP service, its validator and its OpenAPI document.

The schemas are JSON Schema fragments (the subset OpenAPI 3.1 uses).  The
same dictionaries validate every request body (:func:`validate`) and are
served in ``/openapi.json`` (:func:`openapi`), so the document cannot drift
from what the service accepts.  Two extensions drive the error messages:
``x-noun`` names the items of an array ("3 numbers", "percentages") and
``x-too-large-status`` is the HTTP status of a value above its maximum (413
for image sizes: the request is too large, not malformed).
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["RequestError", "validate", "openapi", "schemas", "MAX_GEOMETRIES", "MAX_PATH_CHARS"]

#: Most geometries one DRR request may ask for.
MAX_GEOMETRIES = 360
#: Longest path a request may name (Linux PATH_MAX).
MAX_PATH_CHARS = 4096
#: Most ROIs, and most metrics of each kind, one DVH request may ask for.
MAX_ROIS = 256
MAX_METRICS = 100
#: Image rows and columns: DICOM Rows and Columns are US (PS3.5), at most 65535.
MAX_IMAGE_SIDE = 65535
#: Patient coordinates, distances: at most 100 m from anything (mm).
MAX_MM = 100_000.0


class RequestError(Exception):
    """A request rtforge will not serve: its HTTP status and a one-line reason."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _number(description: str, minimum: float, maximum: float, *, exclusive: bool = False,
            default: float | None = None) -> dict:
    schema: dict[str, Any] = {"type": "number", "maximum": maximum, "description": description}
    schema["exclusiveMinimum" if exclusive else "minimum"] = minimum
    if default is not None:
        schema["default"] = default
    return schema


def _numbers(description: str, noun: str, item: dict, *, count: int | None = None,
             max_items: int = MAX_METRICS) -> dict:
    schema: dict[str, Any] = {"type": "array", "items": item, "x-noun": noun,
                              "description": description}
    schema["minItems"], schema["maxItems"] = (count, count) if count else (0, max_items)
    if not count:
        schema["default"] = []
    return schema


def _path(description: str) -> dict:
    return {"type": "string", "minLength": 1, "maxLength": MAX_PATH_CHARS, "format": "path",
            "description": description + " (on the server, inside its data roots; relative "
                                         "paths are taken from the first data root)"}


def _choice(description: str, choices: tuple[str, ...]) -> dict:
    return {"type": "string", "enum": list(choices), "default": choices[0],
            "description": description}


def _side(name: str) -> dict:
    return {"type": "integer", "minimum": 1, "maximum": MAX_IMAGE_SIDE,
            "x-too-large-status": 413, "description": f"image {name}"}


def _object(properties: dict, required: tuple[str, ...], description: str) -> dict:
    return {"type": "object", "properties": properties, "required": list(required),
            "additionalProperties": False, "description": description}


_ANGLE = (-360.0, 360.0)
GEOMETRY = _object({
    "gantry": _number("gantry angle (degrees, IEC 61217)", *_ANGLE),
    "isocenter": _numbers("isocentre x, y, z (mm, patient LPS)", "numbers",
                          _number("mm", -MAX_MM, MAX_MM), count=3),
    "rows": _side("rows"),
    "columns": _side("columns"),
    "pixel_spacing": _numbers("detector pixel spacing between columns and between rows (mm)",
                              "numbers", _number("mm", 0.0, 1000.0, exclusive=True), count=2),
    "collimator": _number("collimator angle (degrees)", *_ANGLE, default=0.0),
    "couch": _number("couch angle (degrees)", *_ANGLE, default=0.0),
    "sad": _number("source to axis distance (mm)", 0.0, MAX_MM, exclusive=True, default=1000.0),
    "sid": _number("source to detector distance (mm)", 0.0, MAX_MM, exclusive=True,
                   default=1500.0),
    "patient_position": {"type": "string", "maxLength": 4, "default": "HFS",
                         "description": "Patient Position (HFS, HFP, FFS, FFP, ...)"},
}, ("gantry", "isocenter", "rows", "columns", "pixel_spacing"), "one DRR's beam geometry")

STUDY_CT = _object({"ct": _path("folder of one CT series")}, ("ct",), "a CT study")
STUDY_DOSE = _object({"dose": _path("RT Dose file with a dose grid"),
                      "structure_set": _path("RT Structure Set file")},
                     ("dose", "structure_set"), "a dose study")

DRR = _object({
    "ct": STUDY_CT["properties"]["ct"],
    "geometries": {"type": "array", "items": GEOMETRY, "minItems": 1,
                   "maxItems": MAX_GEOMETRIES, "x-noun": "geometries",
                   "description": "one DRR per geometry, all counted against the pixel "
                                  "budget (rows x columns summed)"},
    "method": _choice("ray casting", ("siddon", "trilinear")),
    "device": _choice("where to compute", ("cpu", "cuda")),
    "format": _choice("image/png, or application/dicom (RT Image, Part 10); several "
                      "geometries answer an application/zip", ("png", "rtimage")),
    "annotate": {"type": "boolean", "default": True, "description": (
        "PNG only: draw what 'rtforge drr --png' draws (zoomed to at least 512 pixels; patient "
        "direction letters at the edges, the RT Image Label and the gantry, collimator and "
        "couch angles, the isocentre cross, a scale bar in mm at the isocentre); false answers "
        "the DRR's own rows x columns with nothing drawn. The RT Image is never annotated")},
}, ("ct", "geometries"), "DRRs of a CT")

DVH = _object({
    "dose": STUDY_DOSE["properties"]["dose"],
    "structure_set": STUDY_DOSE["properties"]["structure_set"],
    "rois": {"type": "array", "minItems": 1, "maxItems": MAX_ROIS, "x-noun": "ROI names or numbers",
             "items": {"type": ["string", "integer"], "maxLength": 64, "minimum": 0,
                       "maximum": 2**31 - 1}, "description": "ROI Names or ROI Numbers"},
    "dose_at_volume": _numbers("D{v}% to report", "percentages", _number("percent", 0.0, 100.0)),
    "volume_at_dose": _numbers("V{d}Gy to report", "doses", _number("Gy", 0.0, 10_000.0)),
    "format": _choice("metrics as JSON, or a DVH-only RT Dose (application/dicom)",
                      ("json", "rtdose")),
}, ("dose", "structure_set", "rois"), "DVHs and metrics of ROIs")


def schemas() -> dict[str, dict]:
    """The request schemas by name (as ``#/components/schemas`` lists them)."""
    return {"Geometry": GEOMETRY, "StudyCT": STUDY_CT, "StudyDose": STUDY_DOSE, "DrrRequest": DRR,
            "DvhRequest": DVH}


# ------------------------------------------------------------------ validation
_TYPE_WORDS = {"string": "a string", "integer": "an integer", "number": "a number",
               "array": "a list", "object": "an object", "boolean": "a boolean"}
_JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array",
               dict: "object", type(None): "null"}


def _is(value: object, kind: str) -> bool:
    actual = _JSON_TYPES.get(type(value), "")
    return actual == kind or (kind == "number" and actual == "integer")


def _check_scalar(value: object, schema: dict, where: str) -> None:
    kinds = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
    if not any(_is(value, k) for k in kinds):
        got = _TYPE_WORDS.get(_JSON_TYPES.get(type(value), ""), type(value).__name__)
        raise RequestError(422, f"{where} must be {' or '.join(_TYPE_WORDS[k] for k in kinds)}, "
                                f"got {got}")
    if isinstance(value, str):
        if "enum" in schema and value not in schema["enum"]:
            raise RequestError(422, f"{where} must be one of {', '.join(schema['enum'])}; "
                                    f"got {value[:40]!r}")
        if not schema.get("minLength", 0) <= len(value) <= schema.get("maxLength", len(value)):
            raise RequestError(422, f"{where} must be {schema.get('minLength', 0)} to "
                                    f"{schema['maxLength']} characters, got {len(value)}")
        if "\x00" in value:
            raise RequestError(422, f"{where} must not hold a NUL character")
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise RequestError(422, f"{where} must be a finite number")
    low = schema.get("exclusiveMinimum", schema.get("minimum"))
    if low is not None and (value < low or ("exclusiveMinimum" in schema and value == low)):
        bound = f"greater than {low:g}" if "exclusiveMinimum" in schema else f"at least {low:g}"
        raise RequestError(422, f"{where} must be {bound}, got {value:g}")
    if "maximum" in schema and value > schema["maximum"]:
        raise RequestError(schema.get("x-too-large-status", 422),
                           f"{where} must be at most {schema['maximum']:g}, got {value:.6g}")


def _check(value: object, schema: dict, name: str, prefix: str) -> Any:
    where = f"{prefix}'{name}'" if name else prefix.rstrip(": ")
    kind = schema["type"]
    if kind == "object":
        if not isinstance(value, dict):
            raise RequestError(422, f"{where} must be an object")
        return _check_object(value, schema, prefix)
    if kind != "array":
        _check_scalar(value, schema, where)
        return value
    if not isinstance(value, list):
        raise RequestError(422, f"{where} must be a list")
    low, high, noun = schema.get("minItems", 0), schema.get("maxItems"), schema["x-noun"]
    if low == high and len(value) != low:
        raise RequestError(422, f"{where} must have {low} {noun}, got {len(value)}")
    if not low <= len(value) <= high:
        raise RequestError(413 if len(value) > high else 422,
                           f"{where} must hold {low} to {high} {noun}, got {len(value)}")
    item = schema["items"]
    if item["type"] == "object":
        return [_check(v, item, "", f"{name}[{n}]: ") for n, v in enumerate(value)]
    for v in value:
        _check_scalar(v, item, f"{where} {noun}")
    return value


def _check_object(body: dict, schema: dict, prefix: str = "") -> dict:
    properties = schema["properties"]
    unknown = sorted(set(body) - set(properties))
    if unknown:
        shown = ", ".join(str(u)[:40] for u in unknown[:5])
        raise RequestError(422, f"{prefix}unknown field(s) {shown}; known: "
                                f"{', '.join(properties)}")
    out = {}
    for name, sub in properties.items():
        if name in body:
            out[name] = _check(body[name], sub, name, prefix)
        elif name in schema["required"]:
            raise RequestError(422, f"{prefix}'{name}' is required")
        elif "default" in sub:
            out[name] = sub["default"]
    return out


def validate(body: dict, schema: dict) -> dict:
    """The body checked against ``schema``, with defaults filled in.

    Parameters
    ----------
    body : dict
        A parsed JSON object.
    schema : dict
        One of :func:`schemas`.

    Returns
    -------
    dict
        The known fields (given or defaulted).

    Raises
    ------
    RequestError
        422 naming the field and the problem (413 for a value or a list above
        its maximum where the request is too large).
    """
    return _check_object(body, schema)


# --------------------------------------------------------------------- OpenAPI
_ERROR = {"description": "the request was refused or failed: {\"error\": message}",
          "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
_ERRORS = {str(code): {**_ERROR, "description": text} for code, text in (
    (400, "the body is not a JSON object, or is nested too deep"),
    (401, "a bearer token is required and was not given or is wrong"),
    (403, "a path lies outside the data roots (whether it exists or not)"),
    (404, "a path inside the data roots does not exist"),
    (413, "the body, an image or the request's pixels exceed the service's limits"),
    (415, "the body is not application/json"),
    (422, "a field is missing, of the wrong type or out of range, or a file cannot be read"),
    (500, "a defect of rtforge (logged on the server)"),
    (503, "DRRs in progress leave no room for this one, or memory ran out: retry after "
          "Retry-After seconds"),
)}


def openapi(version: str, max_pixels: int, max_body_bytes: int) -> dict:
    """The OpenAPI 3.1 document of the service.

    Parameters
    ----------
    version : str
        rtforge's version.
    max_pixels, max_body_bytes : int
        The service's pixel budget per request and largest body, stated in the
        document's description.

    Returns
    -------
    dict
    """
    binary = {"schema": {"type": "string", "format": "binary"}}
    post = {
        "/studies": ("load a study now (the next requests find it cached)",
                     {"oneOf": [{"$ref": "#/components/schemas/StudyCT"},
                                {"$ref": "#/components/schemas/StudyDose"}]},
                     {"application/json": {"schema": {"type": "object"}}}),
        "/drr": ("DRRs of a CT", {"$ref": "#/components/schemas/DrrRequest"},
                 {"image/png": binary, "application/dicom": binary, "application/zip": binary}),
        "/dvh": ("DVHs and metrics of ROIs", {"$ref": "#/components/schemas/DvhRequest"},
                 {"application/json": {"schema": {"type": "object"}},
                  "application/dicom": binary}),
    }
    paths: dict[str, Any] = {
        "/health": {"get": {"summary": "the service is up; studies cached",
                            "responses": {"200": {"description": "ok", "content": {
                                "application/json": {"schema": {"type": "object"}}}}}}},
        "/openapi.json": {"get": {"summary": "this document",
                                  "responses": {"200": {"description": "OpenAPI 3.1"}}}},
    }
    for path, (summary, body, answers) in post.items():
        paths[path] = {"post": {
            "summary": summary,
            "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
            "responses": {"200": {"description": "ok", "content": answers}, **_ERRORS}}}
    components = {**schemas(), "Error": {"type": "object", "required": ["error"],
                                         "properties": {"error": {"type": "string"}}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "rtforge serve", "version": version, "description": (
            "DRRs and DVHs of studies on the server. Lengths in mm, angles in degrees, doses in "
            f"Gy. Bodies are application/json, at most {max_body_bytes} bytes; a DRR request's "
            f"rows x columns summed over its geometries is at most {max_pixels} pixels (413 "
            "above). With a token, every request needs 'Authorization: Bearer TOKEN'.")},
        "paths": paths,
        "components": {"schemas": components,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }
