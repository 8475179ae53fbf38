"""The only code in jobctl that unpickles anything: an allow-list decoder, an exact re-encoder,
the inert stand-ins they share, and the time zones job state holds.

Nothing here imports or calls what a row names; see `pickles` for the allow-list.
"""

from jobctl.codec.opcodes import MAX_OPERATIONS, MAX_PICKLE_BYTES
from jobctl.codec.pickles import decode, encode, protocol_of
from jobctl.codec.standins import (
    RECORD_CLASSES,
    BoundAttribute,
    StandIn,
    StateRecord,
    global_name,
    is_stand_in,
    ref_of,
    stand_in_class,
)

__all__ = [
    "MAX_OPERATIONS",
    "MAX_PICKLE_BYTES",
    "RECORD_CLASSES",
    "BoundAttribute",
    "StandIn",
    "StateRecord",
    "decode",
    "encode",
    "global_name",
    "is_stand_in",
    "protocol_of",
    "ref_of",
    "stand_in_class",
]
