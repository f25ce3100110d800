"""DICOM networking: nodes, Verification, Storage SCU and SCP, Query/Retrieve SCU, Storage Commitment SCU.

Storage and Verification run on :mod:`rtforge.net._upper_layer`, a blocking,
thread-per-association implementation of the DICOM Upper Layer (pynetdicom's
PDU classes for negotiation, our own framing for data): pynetdicom's polling
reactor caps C-STORE at about a tenth of dcmtk's rate.  Query/Retrieve uses
pynetdicom as it is (one association path for those services,
:mod:`rtforge.net._pynetdicom`).  TLS comes from the node
(:class:`~rtforge.config.Node` ``tls`` settings): :mod:`rtforge.net.tls`
builds every context, client and listener, and explains every failure.

Public names are imported on first use (:mod:`rtforge._lazy`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rtforge._lazy import lazy_exports
from rtforge.config import Node

if TYPE_CHECKING:  # type checkers and IDEs see the names directly
    from rtforge.net._association import AssociationRejected  # noqa: F401
    from rtforge.net.archive import file_case, restore_case  # noqa: F401
    from rtforge.net.catalog import Catalog  # noqa: F401
    from rtforge.net.commitment import CommitmentResult, request_commitment  # noqa: F401
    from rtforge.net.echo import EchoResult, echo  # noqa: F401
    from rtforge.net.nodes import resolve_node  # noqa: F401
    from rtforge.net.printing import print_images  # noqa: F401
    from rtforge.net.query import MoveResult, QueryLevel, QueryModel, find, move, return_keys  # noqa: F401
    from rtforge.net.receiver import (  # noqa: F401
        DuplicatePolicy,
        StorageSCP,
        StoredObject,
        SyncPolicy,
    )
    from rtforge.net.reconcile import ReconcileReport, reconcile_store  # noqa: F401
    from rtforge.net.status import StatusCategory, status_category, status_meaning  # noqa: F401
    from rtforge.net.store import StoreIssue, StoreReport, encode_for_transfer_syntax, send  # noqa: F401

#: Where each public name lives (Node is the configuration's).
_EXPORTS = {
    "Catalog": "catalog",
    "CommitmentResult": "commitment",
    "request_commitment": "commitment",
    "file_case": "archive",
    "restore_case": "archive",
    "print_images": "printing",
    "resolve_node": "nodes",
    "AssociationRejected": "_association",
    "EchoResult": "echo",
    "echo": "echo",
    "StoreIssue": "store",
    "StoreReport": "store",
    "send": "store",
    "encode_for_transfer_syntax": "store",
    "DuplicatePolicy": "receiver",
    "StoredObject": "receiver",
    "SyncPolicy": "receiver",
    "StorageSCP": "receiver",
    "ReconcileReport": "reconcile",
    "reconcile_store": "reconcile",
    "QueryModel": "query",
    "QueryLevel": "query",
    "return_keys": "query",
    "find": "query",
    "MoveResult": "query",
    "move": "query",
    "StatusCategory": "status",
    "status_category": "status",
    "status_meaning": "status",
}

__all__ = ["Node", *_EXPORTS]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
