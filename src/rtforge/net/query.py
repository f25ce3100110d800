"""Query/Retrieve SOP Classes as SCU: C-FIND and C-MOVE (Oncentra 4.2.1.3.4 and 4.2.1.3.5).

Both go through pynetdicom unchanged: their traffic is a few small
messages, so its polling costs nothing that matters here.  Presentation
contexts as Oncentra tables 4-11 and 4-17 (Implicit VR LE, Explicit VR LE,
Explicit VR BE); the keys requested at each level are Oncentra tables 4-12 to
4-16, kept in :data:`RETURN_KEYS`.

Character set: an identifier whose values are not all ASCII carries Specific
Character Set (0008,0005), ``ISO_IR 100`` where Latin-1 holds every value,
else ``ISO_IR 192`` (:func:`rtforge.io.charset.query_character_set`); a value
that cannot be sent as given (non-ASCII in a UID or code string) is refused
before the association, never sent with ``?``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom.association import Association

from rtforge.config import Node, check_ae_title
from rtforge.errors import InvalidInputError, NetworkError
from rtforge.io.charset import check_value, query_character_set
from rtforge.net._pynetdicom import ServiceRejected, request_association
from rtforge.net.status import StatusCategory, status_category, status_meaning

__all__ = ["QueryModel", "QueryLevel", "RETURN_KEYS", "return_keys", "find", "MoveResult", "move",
           "ServiceRejected"]

logger = logging.getLogger(__name__)


class QueryModel(str, Enum):
    """Query/Retrieve Information Model (PS3.4 C.6)."""

    PATIENT_ROOT = "patient"
    STUDY_ROOT = "study"


class QueryLevel(str, Enum):
    """Query/Retrieve Level (0008,0052)."""

    PATIENT = "PATIENT"
    STUDY = "STUDY"
    SERIES = "SERIES"
    IMAGE = "IMAGE"


#: Oncentra tables 4-11 and 4-17 (PS3.4 C.6.1 and C.6.2).
_FIND = {QueryModel.PATIENT_ROOT: UID("1.2.840.10008.5.1.4.1.2.1.1"),
         QueryModel.STUDY_ROOT: UID("1.2.840.10008.5.1.4.1.2.2.1")}
_MOVE = {QueryModel.PATIENT_ROOT: UID("1.2.840.10008.5.1.4.1.2.1.2"),
         QueryModel.STUDY_ROOT: UID("1.2.840.10008.5.1.4.1.2.2.2")}
_TRANSFER_SYNTAXES = [ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian]

#: Oncentra table 4-12: requested at every level.
_ALL_LEVELS = ("QueryRetrieveLevel", "RetrieveAETitle", "InstanceAvailability")
#: Oncentra table 4-13: patient level of the Patient Root model.
_PATIENT = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex")
#: Oncentra table 4-14: study level (the table prints (0008,1206) for Number of Study
#: Related Instances; its tag is (0020,1208)).
_STUDY = ("StudyDate", "AccessionNumber", "ModalitiesInStudy", "ReferringPhysicianName",
          "StudyDescription", "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances",
          "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID",
          "StudyID")
#: Oncentra table 4-15: series level.
_SERIES = ("Modality", "SeriesDescription", "StudyInstanceUID", "SeriesInstanceUID",
           "SeriesNumber", "NumberOfSeriesRelatedInstances")
#: Oncentra table 4-16: image level.
_IMAGE = ("SOPClassUID", "SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID",
          "InstanceNumber")


def _patient_root(keys: tuple[str, ...]) -> tuple[str, ...]:
    """Below the patient level of the Patient Root model only Patient ID comes from above."""
    return ("PatientID",) + tuple(k for k in keys if k not in _PATIENT)


#: Keys requested per model and level (values empty: return keys), tables 4-12 to 4-16.
RETURN_KEYS: dict[tuple[QueryModel, QueryLevel], tuple[str, ...]] = {
    (QueryModel.PATIENT_ROOT, QueryLevel.PATIENT): _ALL_LEVELS + _PATIENT,
    (QueryModel.PATIENT_ROOT, QueryLevel.STUDY): _ALL_LEVELS + _patient_root(_STUDY),
    (QueryModel.PATIENT_ROOT, QueryLevel.SERIES): _ALL_LEVELS + _patient_root(_SERIES),
    (QueryModel.PATIENT_ROOT, QueryLevel.IMAGE): _ALL_LEVELS + _patient_root(_IMAGE),
    (QueryModel.STUDY_ROOT, QueryLevel.STUDY): _ALL_LEVELS + _STUDY,
    (QueryModel.STUDY_ROOT, QueryLevel.SERIES): _ALL_LEVELS + _SERIES,
    (QueryModel.STUDY_ROOT, QueryLevel.IMAGE): _ALL_LEVELS + _IMAGE,
}


def _level(level: QueryLevel | str) -> QueryLevel:
    return level if isinstance(level, QueryLevel) else QueryLevel(level.upper())


def return_keys(model: QueryModel | str, level: QueryLevel | str) -> tuple[str, ...]:
    """The keywords requested by :func:`find` for ``model`` and ``level``.

    Raises
    ------
    InvalidInputError
        For the patient level of the Study Root model, which has none.
    """
    key = (QueryModel(model), _level(level))
    if key not in RETURN_KEYS:
        raise InvalidInputError("the Study Root model has no PATIENT level: use --model patient")
    return RETURN_KEYS[key]


@contextmanager
def _associate(node: Node, ae_title: str, abstract_syntax: UID,
               evt_handlers: Sequence[tuple[Any, Any]] = ()) -> Iterator[Association]:
    assoc = request_association(node, ae_title, [(abstract_syntax, _TRANSFER_SYNTAXES)],
                                evt_handlers=evt_handlers)
    try:
        yield assoc
    finally:
        if assoc.is_established:
            assoc.release()


def _keyword(keyword: str) -> str:
    if tag_for_keyword(keyword) is None:
        raise InvalidInputError(f"{keyword!r} is not a DICOM keyword")
    return keyword


def _set_keys(identifier: Dataset, keys: Mapping[str, str]) -> None:
    """Set matching keys, then Specific Character Set when a value needs it.

    A value its VR cannot carry (non-ASCII in a UID, a code string or a
    date) is refused before pydicom sees it (it would warn and send ``?``).
    """
    for keyword, value in keys.items():
        check_value(keyword, dictionary_VR(_keyword(keyword)), value, "ISO_IR 192")
        setattr(identifier, keyword, value)
    character_set = query_character_set(elem.value for elem in identifier)
    if character_set is not None:
        identifier.SpecificCharacterSet = character_set


def find(node: Node, level: QueryLevel | str = QueryLevel.STUDY, *,
         model: QueryModel | str = QueryModel.STUDY_ROOT,
         filters: Mapping[str, str] | None = None, ae_title: str = "RTFORGE") -> list[Dataset]:
    """C-FIND: the matches of a query, with the return keys of Oncentra tables 4-12 to 4-16.

    Parameters
    ----------
    node : Node
        The Query/Retrieve SCP.
    level : QueryLevel or str
        PATIENT (Patient Root only), STUDY, SERIES or IMAGE.
    model : QueryModel or str
        ``"study"`` (Study Root, default) or ``"patient"`` (Patient Root).
    filters : mapping of str to str, optional
        Matching keys by DICOM keyword, in DICOM matching syntax (``"DOE^*"``,
        ``"20240101-20240131"``).  A strictly hierarchical SCP (dcmqrscp)
        needs the unique keys of the levels above: StudyInstanceUID for a
        series query, and SeriesInstanceUID too for an image query.
    ae_title : str
        Our (calling) AE title.

    Returns
    -------
    list of Dataset
        One identifier per match, in the order received.

    Raises
    ------
    InvalidInputError
        For an unknown keyword, model or level, or a non-ASCII value of a
        VR that allows only ASCII (a UID, a code string, a date).
    NetworkError
        If the association fails or the query ends with a failure status.
    """
    model = QueryModel(model)
    level = _level(level)
    identifier = Dataset()
    for keyword in return_keys(model, level):
        setattr(identifier, keyword, "" if dictionary_VR(keyword) != "SQ" else [])
    identifier.QueryRetrieveLevel = level.value
    _set_keys(identifier, filters or {})
    matches: list[Dataset] = []
    with _associate(node, ae_title, _FIND[model]) as assoc:
        for status, match in assoc.send_c_find(identifier, _FIND[model]):
            if "Status" not in status:
                raise NetworkError("C-FIND got no valid response (timeout or abort)",
                                   peer=str(node))
            category = status_category(status.Status)
            if category is StatusCategory.PENDING:
                if match is not None:
                    matches.append(match)
                continue
            if category not in (StatusCategory.SUCCESS, StatusCategory.WARNING):
                comment = f": {status.ErrorComment}" if "ErrorComment" in status else ""
                raise NetworkError(f"C-FIND answered {status_meaning(status.Status)}{comment}",
                                   peer=str(node), status=status.Status)
    logger.info("%s: %d %s matches", node, len(matches), level.value)
    return matches


@dataclass
class MoveResult:
    """How a C-MOVE ended.

    Parameters
    ----------
    status : int
        The final status (0x0000, or 0xB000 when some sub-operations failed).
    completed, failed, warning : int
        Sub-operation counts (Number of Completed/Failed/Warning Suboperations).
    failed_sop_instance_uids : list of str
        Failed SOP Instance UID List of the final response, when sent.
    """

    status: int
    completed: int = 0
    failed: int = 0
    warning: int = 0
    failed_sop_instance_uids: list[str] = field(default_factory=list)


def move(node: Node, destination: str, *, study_uid: str | None = None,
         series_uid: str | None = None, sop_uid: str | None = None,
         patient_id: str | None = None, model: QueryModel | str = QueryModel.STUDY_ROOT,
         ae_title: str = "RTFORGE") -> MoveResult:
    """C-MOVE a study, series or instance to ``destination``.

    The level is that of the most specific UID given; give the UIDs of the
    levels above too for a strictly hierarchical SCP (and ``patient_id`` with
    the Patient Root model).  With the Patient Root model, ``patient_id``
    alone moves the whole patient (PATIENT level, as dcmtk's movescu).

    Parameters
    ----------
    node : Node
        The Query/Retrieve SCP.
    destination : str
        The AE title it should send to (it must know its address).
    study_uid, series_uid, sop_uid : str, optional
        Study, Series and SOP Instance UIDs.
    patient_id : str, optional
        Patient ID (Patient Root model); alone, the PATIENT level.
    model : QueryModel or str
        ``"study"`` (default) or ``"patient"``.
    ae_title : str
        Our (calling) AE title.

    Returns
    -------
    MoveResult
        When the move ends with success or warning status.

    Raises
    ------
    InvalidInputError
        If nothing to move is named, the destination is not a valid AE title,
        or a UID is not ASCII.
    NetworkError
        If the association fails or the move ends with a failure or cancel
        status (the counts are in the message).
    """
    model = QueryModel(model)
    destination = check_ae_title(destination, "move destination")
    if sop_uid:
        level = QueryLevel.IMAGE
    elif series_uid:
        level = QueryLevel.SERIES
    elif study_uid:
        level = QueryLevel.STUDY
    elif patient_id and model is QueryModel.PATIENT_ROOT:
        level = QueryLevel.PATIENT
    elif patient_id:
        raise InvalidInputError("moving a whole patient needs the Patient Root model "
                                "(model='patient'; --model patient)")
    else:
        raise InvalidInputError("give a Patient ID (Patient Root), or a study, series or SOP "
                                "Instance UID to move")
    identifier = Dataset()
    identifier.QueryRetrieveLevel = level.value
    _set_keys(identifier, {keyword: value for keyword, value in (
        ("PatientID", patient_id), ("StudyInstanceUID", study_uid),
        ("SeriesInstanceUID", series_uid), ("SOPInstanceUID", sop_uid)) if value})
    result = MoveResult(status=0xFFFF)
    with _associate(node, ae_title, _MOVE[model]) as assoc:
        for status, response in assoc.send_c_move(identifier, destination, _MOVE[model]):
            if "Status" not in status:
                raise NetworkError("C-MOVE got no valid response (timeout or abort)",
                                   peer=str(node))
            result.status = status.Status
            result.completed = int(status.get("NumberOfCompletedSuboperations", result.completed))
            result.failed = int(status.get("NumberOfFailedSuboperations", result.failed))
            result.warning = int(status.get("NumberOfWarningSuboperations", result.warning))
            if response is not None and "FailedSOPInstanceUIDList" in response:
                failed = response.FailedSOPInstanceUIDList
                result.failed_sop_instance_uids = [failed] if isinstance(failed, str) \
                    else list(failed)
    category = status_category(result.status)
    if category not in (StatusCategory.SUCCESS, StatusCategory.WARNING):
        raise NetworkError(f"C-MOVE to {destination} answered {status_meaning(result.status)} "
                           f"({result.completed} completed, {result.failed} failed, "
                           f"{result.warning} warning)", peer=str(node), status=result.status)
    logger.info("%s: moved to %s: %d completed, %d failed, %d warning", node, destination,
                result.completed, result.failed, result.warning)
    return result
