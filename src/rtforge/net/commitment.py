"""Storage Commitment Push Model as SCU (PS3.4 Annex J): N-ACTION, then the N-EVENT-REPORT.

We ask the archive, in one N-ACTION-RQ (Action Type ID 1) on the
well-known SOP Instance 1.2.840.10008.1.20.1.1, to commit to a list of
(SOP Class UID, SOP Instance UID) pairs under a new Transaction UID.  The
archive answers with an N-EVENT-REPORT-RQ carrying that Transaction UID:
Event Type ID 1 when it committed to every instance, 2 when some are in the
Failed SOP Sequence (with a Failure Reason).  PS3.4 J.3.3 lets it send the
report on the association of the N-ACTION or on a new association it opens
to our AE; Orthanc does the latter, to the address its ``DicomModalities``
gives for the calling AE title of the N-ACTION.  Both are served: the
association stays open, with an N-EVENT-REPORT handler, while a listener on
``listen_host:listen_port`` with ``ae_title`` (the same title as the
N-ACTION's calling AE) accepts the archive's association.  The wait is
bounded by the node's timeout.

What a commitment proves, and what it does not: the archive states that it
holds, and takes responsibility for keeping, an instance of that SOP Class
with that SOP Instance UID.  It says nothing of the content: an archive that
already held another object under the UID (and kept it when the same UID was
stored again) commits all the same.  :mod:`rtforge.net.archive` therefore
relies on a commitment only for instances the archive did not hold before
they were sent in the same run.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from pydicom.dataset import Dataset
from pydicom.uid import UID, generate_uid
from pynetdicom import evt

from rtforge.config import Node, check_ae_title
from rtforge.errors import NetworkError
from rtforge.net._ae import rtforge_ae
from rtforge.net.query import _TRANSFER_SYNTAXES, _associate
from rtforge.net.status import StatusCategory, status_category, status_meaning
from rtforge.net.tls import listener_context

__all__ = ["STORAGE_COMMITMENT_PUSH_MODEL", "CommitmentResult", "request_commitment"]

logger = logging.getLogger(__name__)

#: Storage Commitment Push Model SOP Class and its well-known SOP Instance (PS3.4 J.3.5).
STORAGE_COMMITMENT_PUSH_MODEL = UID("1.2.840.10008.1.20.1")
_WELL_KNOWN_INSTANCE = UID("1.2.840.10008.1.20.1.1")
#: Action Type ID of "Request Storage Commitment" (PS3.4 J.3.2.1).
_REQUEST_COMMITMENT = 1


@dataclass
class CommitmentResult:
    """The archive's N-EVENT-REPORT for one transaction.

    Parameters
    ----------
    transaction_uid : str
    committed : set of str
        SOP Instance UIDs in the Referenced SOP Sequence of the report.
    failed : dict of str to int
        SOP Instance UIDs in the Failed SOP Sequence, with their Failure
        Reason (PS3.4 J.3.2.1.1.2: 0x0112 no such object instance, ...),
        plus requested instances the report does not name at all (reason
        0x0110, processing failure).
    same_association : bool
        Whether the report came on the association of the N-ACTION.
    """

    transaction_uid: str
    committed: set[str] = field(default_factory=set)
    failed: dict[str, int] = field(default_factory=dict)
    same_association: bool = False


class _NoContextIsAnAnswer(logging.Filter):
    """pynetdicom logs an archive without Storage Commitment as an ERROR; it is an answer."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "No accepted presentation contexts" not in record.getMessage()


@contextmanager
def _quiet_rejection() -> Iterator[None]:
    acse = logging.getLogger("pynetdicom.acse")
    quiet = _NoContextIsAnAnswer()
    acse.addFilter(quiet)
    try:
        yield
    finally:
        acse.removeFilter(quiet)


class _Waiter:
    """Receives N-EVENT-REPORTs (from any association) and keeps the one awaited."""

    def __init__(self, transaction_uid: str) -> None:
        self.transaction_uid = transaction_uid
        self.report: Dataset | None = None
        self.same_association = False
        self.done = threading.Event()

    def handler(self, same_association: bool) -> Callable[[evt.Event], tuple[int, None]]:
        def on_report(event: evt.Event) -> tuple[int, None]:
            info = event.event_information
            if str(info.get("TransactionUID", "")) != self.transaction_uid:
                logger.warning("N-EVENT-REPORT for unknown transaction %s ignored",
                               info.get("TransactionUID", "?"))
                return 0x0000, None
            self.report = info
            self.same_association = same_association
            self.done.set()
            return 0x0000, None

        return on_report


def _request(references: Sequence[tuple[str, str]], transaction_uid: str) -> Dataset:
    ds = Dataset()
    ds.TransactionUID = transaction_uid
    items = []
    for sop_class, sop_instance in references:
        item = Dataset()
        item.ReferencedSOPClassUID = sop_class
        item.ReferencedSOPInstanceUID = sop_instance
        items.append(item)
    ds.ReferencedSOPSequence = items
    return ds


def _result(waiter: _Waiter, report: Dataset,
            references: Sequence[tuple[str, str]]) -> CommitmentResult:
    result = CommitmentResult(waiter.transaction_uid, same_association=waiter.same_association)
    for item in report.get("ReferencedSOPSequence", []):
        result.committed.add(str(item.get("ReferencedSOPInstanceUID", "")))
    for item in report.get("FailedSOPSequence", []):
        uid = str(item.get("ReferencedSOPInstanceUID", ""))
        result.committed.discard(uid)
        result.failed[uid] = int(item.get("FailureReason", 0x0110))
    for _, uid in references:
        if uid not in result.committed and uid not in result.failed:
            result.failed[uid] = 0x0110
    result.committed &= {uid for _, uid in references}
    return result


def request_commitment(node: Node, references: Sequence[tuple[str, str]], *, ae_title: str,
                       listen_port: int, listen_host: str = "") -> CommitmentResult:
    """Ask ``node`` to commit to ``references`` and wait for its report.

    Parameters
    ----------
    node : Node
        The archive; its timeout bounds the association and the wait for the
        N-EVENT-REPORT.
    references : sequence of (str, str)
        (SOP Class UID, SOP Instance UID) of each instance.
    ae_title : str
        Our AE title: the calling AE of the N-ACTION and the title of the
        listener (the archive must know it, at ``listen_port``, to report on
        a new association).
    listen_port : int
        Port of the listener for a report on a new association.
    listen_host : str
        Address it listens on (default every interface).

    Returns
    -------
    CommitmentResult

    Raises
    ------
    rtforge.net.query.ServiceRejected
        If the archive does not accept the Storage Commitment Push Model SOP
        Class (it does not support it).
    NetworkError
        If the listener cannot listen, the association or the N-ACTION
        fails, or no report arrives within the node's timeout.
    """
    ae_title = check_ae_title(ae_title)
    waiter = _Waiter(generate_uid())
    listener = rtforge_ae(ae_title)
    listener.network_timeout = listener.acse_timeout = listener.dimse_timeout = node.timeout
    listener.add_supported_context(STORAGE_COMMITMENT_PUSH_MODEL, _TRANSFER_SYNTAXES)
    tls = listener_context(node)
    try:
        server = listener.start_server((listen_host, listen_port), block=False, ssl_context=tls,
                                       evt_handlers=[(evt.EVT_N_EVENT_REPORT,
                                                      waiter.handler(False))])
    except OSError as exc:
        raise NetworkError(f"cannot listen on port {listen_port} for the Storage Commitment "
                           f"report: {exc.strerror or exc}") from None
    try:
        with _quiet_rejection(), \
                _associate(node, ae_title, STORAGE_COMMITMENT_PUSH_MODEL,
                           [(evt.EVT_N_EVENT_REPORT, waiter.handler(True))]) as assoc:
            status, _ = assoc.send_n_action(_request(references, waiter.transaction_uid),
                                            _REQUEST_COMMITMENT, STORAGE_COMMITMENT_PUSH_MODEL,
                                            _WELL_KNOWN_INSTANCE)
            if "Status" not in status:
                raise NetworkError("N-ACTION got no valid response (timeout or abort)",
                                   peer=str(node))
            if status_category(status.Status) not in (StatusCategory.SUCCESS,
                                                      StatusCategory.WARNING):
                raise NetworkError(f"Storage Commitment N-ACTION answered "
                                   f"{status_meaning(status.Status)}", peer=str(node),
                                   status=status.Status)
            if not waiter.done.wait(node.timeout) or waiter.report is None:
                raise NetworkError(
                    f"no Storage Commitment report within {node.timeout:g} s (the archive "
                    f"must know AE {ae_title} at port {listen_port} to report on a new "
                    "association; or set verify = \"retrieve\" for this node)", peer=str(node))
            report = waiter.report
    finally:
        server.shutdown()
    result = _result(waiter, report, references)
    logger.info("%s: committed %d of %d instance(s) (transaction %s, report on %s association)",
                node, len(result.committed), len(references), result.transaction_uid,
                "the same" if result.same_association else "a new")
    return result
