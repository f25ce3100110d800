"""The one character-set policy of everything rtforge writes or sends (PS3.5 6.1).

Objects
-------
Every object rtforge writes carries Specific Character Set (0008,0005) =
the configured output set, ``character_set`` under ``[export]``
(:class:`~rtforge.config.ExportConfig`):

- ``"ISO_IR 100"`` (Latin-1), the default: what iPlan writes, always (iPlan
  section 6 and table 8-22), and the one extended set of the Oncentra
  statement (section 6, table 6-1);
- ``"ISO_IR 192"`` (UTF-8, every character), when configured.

A text value the output set cannot hold is an error naming the attribute and
the value (:class:`~rtforge.errors.InvalidInputError`): nothing is written,
and the remedy is in the message.  pydicom, when an encoding fails, warns and
writes ``?`` in place of each character: the writers therefore check every
value first (:func:`check_dataset`), so that warning never happens.

Objects read from elsewhere (de-identification, relinking, plan split, the
source of a reslice) are decoded with their own Specific Character Set and
re-encoded under the policy (:func:`conformed`); one that declares no set and
holds only ASCII is valid in both and passes as it is.  The records of a
DICOMDIR are re-encoded too (:func:`reencode`; the files it lists are copied
as they are).  A value pydicom could not decode (it substitutes U+FFFD) is an
error, never written on.

Queries
-------
A C-FIND or C-MOVE identifier carries Specific Character Set when a value is
not plain ASCII (:func:`query_character_set`): ``ISO_IR 100`` when Latin-1
holds every value (what Oncentra's SCU sends), else ``ISO_IR 192``.  Without
it a peer reads the bytes as the default repertoire (dcmqrscp then matches
nothing), and pydicom sends ``?`` for what Latin-1 lacks (a ``?`` matches any
character).  Peers differ past that: Orthanc matches both sets and answers in
its own DefaultEncoding (Latin1 unless configured); dcmqrscp 3.6.7 converts a
C-FIND identifier but compares C-MOVE keys as UTF-8 bytes, so a Latin-1
Patient ID in a C-MOVE matches there only by its UIDs.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Collection, Iterable, Mapping

from pydicom import Dataset
from pydicom.charset import python_encoding
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.multival import MultiValue

from rtforge.config import CHARACTER_SETS, DEFAULT_CHARACTER_SET, ExportConfig
from rtforge.errors import ConformanceError, InvalidInputError

__all__ = [
    "CODECS",
    "TEXT_VRS",
    "output_character_set",
    "check_value",
    "check_values",
    "check_dataset",
    "check_source",
    "reencode",
    "conformed",
    "query_character_set",
]

#: Python codec of each Specific Character Set rtforge writes (no value: the default repertoire).
CODECS: dict[str, str] = {"": "ascii", "ISO_IR 6": "ascii", "ISO_IR 100": "latin_1",
                          "ISO_IR 192": "utf_8"}
#: VRs whose values Specific Character Set applies to (PS3.5 6.1.2.3); every other
#: string VR holds the default repertoire (ASCII) only.
TEXT_VRS = frozenset({"SH", "LO", "ST", "LT", "UC", "UT", "PN"})
#: (DS and IS are left out: rtforge formats them from numbers, and they are most of
#: the values of large objects.)
_STRING_VRS = TEXT_VRS | {"AE", "AS", "CS", "DA", "DT", "TM", "UI", "UR"}
_REPLACEMENT = "\ufffd"
_NAMES = {"ISO_IR 100": "Latin-1", "ISO_IR 192": "UTF-8"}


def output_character_set(config: ExportConfig | None = None) -> str:
    """The Specific Character Set of what rtforge writes.

    Parameters
    ----------
    config : ExportConfig, optional
        Its ``character_set``; the default (``ISO_IR 100``) without one.

    Returns
    -------
    str
    """
    return config.character_set if config is not None else DEFAULT_CHARACTER_SET


def _texts(value: object) -> list[str]:
    if isinstance(value, bytes | bytearray) or value is None:
        return []
    if isinstance(value, list | tuple | MultiValue):
        return [str(v) for v in value if v is not None and not isinstance(v, bytes)]
    return [str(value)]


def check_value(keyword: str, vr: str, value: object, character_set: str) -> None:
    """Refuse a value that ``character_set`` cannot hold.

    Parameters
    ----------
    keyword : str
        Its attribute (named in the error).
    vr : str
        Its VR: text VRs (:data:`TEXT_VRS`) are checked against
        ``character_set``, other string VRs against ASCII, the rest not at all.
    value : object
        A string, a person name, or several of them.
    character_set : str
        A key of :data:`CODECS`.

    Raises
    ------
    InvalidInputError
        If a character cannot be encoded, or the value holds U+FFFD (what
        pydicom puts where it could not decode the source).
    """
    if vr not in _STRING_VRS:
        return
    codec = CODECS[character_set] if vr in TEXT_VRS else "ascii"
    for text in _texts(value):
        if _REPLACEMENT in text:
            raise InvalidInputError(
                f"value {text!r} holds characters that could not be decoded with the source's "
                "Specific Character Set (0008,0005)", tag=keyword)
        try:
            text.encode(codec)
        except UnicodeEncodeError as exc:
            if vr not in TEXT_VRS:
                raise InvalidInputError(
                    f"value {text!r} ({vr}) may hold only ASCII characters", tag=keyword) from None
            name = _NAMES.get(character_set, "the default repertoire")
            raise InvalidInputError(
                f"value {text!r} cannot be written in {character_set or 'ISO_IR 6'} ({name}): "
                f"{exc.object[exc.start:exc.end]!r} is not in it; set character_set = "
                '"ISO_IR 192" under [export] in the configuration to write UTF-8',
                tag=keyword) from None


def check_values(values: Mapping[str, object], character_set: str) -> None:
    """:func:`check_value` of every value of a builder, sequence items included.

    Parameters
    ----------
    values : mapping of str to object
        Keyword to value; Datasets in sequence values are checked with
        :func:`check_dataset`.
    character_set : str

    Raises
    ------
    InvalidInputError
        Naming the first attribute whose value cannot be written.
    """
    for keyword, value in values.items():
        tag = tag_for_keyword(keyword)
        if tag is None or value is None:
            continue
        vr = dictionary_VR(tag)
        if vr == "SQ":
            for item in value if isinstance(value, list | tuple | MultiValue) else [value]:
                if isinstance(item, Dataset):
                    check_dataset(item, character_set)
        else:
            check_value(keyword, vr, value, character_set)


def check_dataset(ds: Dataset, character_set: str | None = None, *,
                  skip: Collection[int] = ()) -> None:
    """Refuse a data set whose text pydicom would write with ``?``.

    Elements still raw (not decoded since they were read) are written as
    read and are not checked; everything else is, sequences included.

    Parameters
    ----------
    ds : pydicom.Dataset
    character_set : str, optional
        The Specific Character Set in effect when ``ds`` has none of its own
        (a sequence item); ``ISO_IR 6`` by default.
    skip : collection of int, optional
        Tags of sequences not to look into, at any depth: bulk sequences
        that hold no text (an RT Structure Set's Contour Sequence).

    Raises
    ------
    InvalidInputError
        If a value cannot be encoded (see :func:`check_value`).
    ConformanceError
        If ``ds`` declares a character set rtforge does not write (apply
        :func:`conformed` first).
    """
    own = ds.get("SpecificCharacterSet")
    if own is not None:
        character_set = own if isinstance(own, str) else "\\".join(own)
    character_set = character_set or ""
    if character_set not in CODECS:
        raise ConformanceError(
            f"Specific Character Set {character_set!r}: rtforge writes only "
            f"{', '.join(CHARACTER_SETS)} (re-encode with rtforge.io.charset.conformed)")
    for elem in ds.elements():
        if not isinstance(elem, DataElement) or elem.tag in skip:
            continue
        if elem.VR == "SQ":
            for item in elem.value:
                check_dataset(item, character_set, skip=skip)
        else:
            check_value(elem.keyword or str(elem.tag), elem.VR, elem.value, character_set)


def _spelling(term: str) -> str:
    return re.sub(r"[-_ ]", "", term).upper()


#: Defined terms of Specific Character Set pydicom decodes, by a spelling that also
#: covers the variants it corrects (``ISO-IR 100``, ``ISO_IR_100``).
_DECODABLE = frozenset(_spelling(term) for term in python_encoding)


def check_source(ds: Dataset) -> None:
    """Refuse a source whose text cannot be decoded for sure.

    pydicom reads an unknown Specific Character Set as its default with only
    a warning: its text would then be re-encoded from a guess.

    Parameters
    ----------
    ds : pydicom.Dataset

    Raises
    ------
    InvalidInputError
        If a value of Specific Character Set is not a defined term (PS3.3
        C.12.1.1.2) that pydicom can decode.
    """
    own = ds.get("SpecificCharacterSet")
    terms = [own] if isinstance(own, str) else list(own or [])
    unknown = [t for t in terms if t and t.strip() and _spelling(t) not in _DECODABLE]
    if unknown:
        raise InvalidInputError(
            f"{unknown[0]!r} is not a character set rtforge can decode (PS3.3 C.12.1.1.2): "
            "its text would be guessed", path=getattr(ds, "filename", None),
            tag="SpecificCharacterSet")


def _decode_all(ds: Dataset) -> None:
    """Convert every raw element (decoding text with the source's character set)."""
    for elem in ds:
        if elem.VR == "SQ":
            for item in elem.value:
                _decode_all(item)


def _drop_item_character_sets(ds: Dataset) -> None:
    for elem in ds:
        if elem.VR == "SQ":
            for item in elem.value:
                if "SpecificCharacterSet" in item:
                    del item.SpecificCharacterSet
                _drop_item_character_sets(item)


def reencode(ds: Dataset, character_set: str) -> None:
    """Put ``ds``, in place, under ``character_set``: decode, declare, check.

    Parameters
    ----------
    ds : pydicom.Dataset
        Its text is decoded with its own Specific Character Set (or its
        parent's) first; sequence items lose theirs.
    character_set : str
        The output set (:func:`output_character_set`).

    Raises
    ------
    InvalidInputError
        If a value cannot be written in ``character_set`` (or could not be
        decoded from the source); ``ds`` then holds decoded values under
        ``character_set`` and must not be written.
    """
    _decode_all(ds)
    _drop_item_character_sets(ds)
    ds.SpecificCharacterSet = character_set
    check_dataset(ds)


def conformed(ds: Dataset, character_set: str) -> Dataset:
    """``ds`` under the output character set: decoded with its own, checked, re-encoded.

    Parameters
    ----------
    ds : pydicom.Dataset
        Not modified (beyond pydicom's decoding of raw elements).
    character_set : str
        The output set (:func:`output_character_set`).

    Returns
    -------
    pydicom.Dataset
        ``ds`` itself when it is already in ``character_set``, or declares
        no character set and holds only ASCII (the default repertoire, a
        subset of both output sets); else a copy put under
        ``character_set`` by :func:`reencode`.

    Raises
    ------
    InvalidInputError
        If a value cannot be written in ``character_set``, or could not be
        decoded from the source (see also :func:`check_source`).
    """
    check_source(ds)
    own = ds.get("SpecificCharacterSet")
    try:
        if own in (None, character_set):
            _decode_all(ds)
            try:
                check_dataset(ds)  # in the output set already, or ASCII only: valid in both
                return ds
            except InvalidInputError:
                if own is not None:
                    raise
        out = copy.deepcopy(ds)
        reencode(out, character_set)
        return out
    except InvalidInputError as exc:
        path = getattr(ds, "filename", None)
        if exc.path is not None or not isinstance(path, str):
            raise
        raise InvalidInputError(exc.reason, path=path, tag=exc.tag) from None


def query_character_set(values: Iterable[object]) -> str | None:
    """Specific Character Set of a query identifier holding ``values``.

    Parameters
    ----------
    values : iterable of object
        The identifier's values (strings; others are ignored).

    Returns
    -------
    str or None
        None when every value is ASCII, ``ISO_IR 100`` when Latin-1 holds
        them all, else ``ISO_IR 192``.
    """
    texts = [t for v in values for t in _texts(v)]
    if all(t.isascii() for t in texts):
        return None
    try:
        for text in texts:
            text.encode("latin_1")
    except UnicodeEncodeError:
        return "ISO_IR 192"
    return "ISO_IR 100"
