"""Store errors classified by what fixes them.

``transient``: time or an operator fixes it, the data is fine: retry (pause, back off, report
degraded). ``data``: these rows can never go in: quarantine them (the rest of their batch
goes on). ``schema``: the table does not match what is sent: quarantine, report failing.
``unknown``: retried like a transient error, but only a few times (see the pipeline).
"""

from __future__ import annotations

import re
from typing import Literal

Category = Literal["transient", "data", "schema", "unknown"]

#: ClickHouse error codes (src/Common/ErrorCodes.cpp) whose cause passes.
TRANSIENT_CODES = {
    3,  # UNEXPECTED_END_OF_FILE (a connection cut mid-answer)
    74,  # CANNOT_READ_FROM_FILE_DESCRIPTOR
    75,  # CANNOT_WRITE_TO_FILE_DESCRIPTOR (disk full shows as this too)
    159,  # TIMEOUT_EXCEEDED
    164,  # READONLY
    202,  # TOO_MANY_SIMULTANEOUS_QUERIES
    209,  # SOCKET_TIMEOUT
    210,  # NETWORK_ERROR
    225,  # NO_ZOOKEEPER
    236,  # ABORTED
    241,  # MEMORY_LIMIT_EXCEEDED
    242,  # TABLE_IS_READ_ONLY
    243,  # NOT_ENOUGH_SPACE
    252,  # TOO_MANY_PARTS
    286,  # UNKNOWN_STATUS_OF_INSERT
    319,  # UNKNOWN_STATUS_OF_INSERT (18.x)
    425,  # SYSTEM_ERROR
    999,  # KEEPER_EXCEPTION
}
#: Codes saying these values cannot be stored.
DATA_CODES = {
    6,  # CANNOT_PARSE_TEXT
    27,  # CANNOT_PARSE_INPUT_ASSERTION_FAILED
    38,  # CANNOT_PARSE_DATE
    41,  # CANNOT_PARSE_DATETIME
    53,  # TYPE_MISMATCH
    69,  # ARGUMENT_OUT_OF_BOUND
    70,  # CANNOT_CONVERT_TYPE
    72,  # CANNOT_PARSE_NUMBER
    321,  # VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
    407,  # DECIMAL_OVERFLOW
    469,  # VIOLATED_CONSTRAINT
    441,  # CANNOT_PARSE_IPV4
    442,  # CANNOT_PARSE_IPV6
}
#: Codes saying the table is not what the insert expects.
SCHEMA_CODES = {
    8,  # THERE_IS_NO_COLUMN
    10,  # NOT_FOUND_COLUMN_IN_BLOCK
    16,  # NO_SUCH_COLUMN_IN_TABLE
    20,  # NUMBER_OF_COLUMNS_DOESNT_MATCH
    47,  # UNKNOWN_IDENTIFIER
    60,  # UNKNOWN_TABLE
    62,  # SYNTAX_ERROR
    81,  # UNKNOWN_DATABASE
}
#: Text that settles it whatever the code (disk full reaches us under several codes).
_TRANSIENT_TEXT = re.compile(
    r"No space left on device|Disk quota exceeded|NOT_ENOUGH_SPACE|TOO_MANY_PARTS|TABLE_IS_READ_ONLY|"
    r"Too many parts|Cannot reserve .* on any disk|Connection refused|Connection reset",
    re.IGNORECASE,
)
_CODE = re.compile(r"Code:\s*(\d+)")


def code_of(message: str) -> int | None:
    """The ClickHouse error code a message starts with (``Code: 243. DB::Exception: ...``)."""
    m = _CODE.search(message)
    return int(m.group(1)) if m else None


def classify(code: int | None, message: str = "") -> Category:
    """What fixes an error with this code and message."""
    if _TRANSIENT_TEXT.search(message) or code in TRANSIENT_CODES:
        return "transient"
    if code in DATA_CODES:
        return "data"
    if code in SCHEMA_CODES:
        return "schema"
    return "unknown"
