"""DICOM networking: nodes, Verification, Storage SCU and SCP, Query/Retrieve SCU.

Storage and Verification run on :mod:`rtforge.net._upper_layer`, a blocking,
thread-per-association implementation of the DICOM Upper Layer (pynetdicom's
PDU classes for negotiation, our own framing for data): pynetdicom's polling
reactor caps C-STORE at about a tenth of dcmtk's rate.  Query/Retrieve uses
pynetdicom as it is.
"""

from rtforge.config import Node
from rtforge.net._association import AssociationRejected
from rtforge.net.archive import file_case, restore_case
from rtforge.net.catalog import Catalog
from rtforge.net.echo import EchoResult, echo
from rtforge.net.nodes import resolve_node
from rtforge.net.printing import print_images
from rtforge.net.query import MoveResult, QueryLevel, QueryModel, find, move, return_keys
from rtforge.net.receiver import DuplicatePolicy, StorageSCP, StoredObject
from rtforge.net.status import StatusCategory, status_category, status_meaning
from rtforge.net.store import StoreIssue, StoreReport, encode_for_transfer_syntax, send

__all__ = [
    "Node",
    "Catalog",
    "file_case",
    "restore_case",
    "print_images",
    "resolve_node",
    "AssociationRejected",
    "EchoResult",
    "echo",
    "StoreIssue",
    "StoreReport",
    "send",
    "encode_for_transfer_syntax",
    "DuplicatePolicy",
    "StoredObject",
    "StorageSCP",
    "QueryModel",
    "QueryLevel",
    "return_keys",
    "find",
    "MoveResult",
    "move",
    "StatusCategory",
    "status_category",
    "status_meaning",
]
