"""CSV and JSON text as the toolkit writes it: every cell safe in a spreadsheet, strict JSON.

A file name such as `=cmd|' /C calc'!A0.jpg` or `@SUM(1+1).jpg` written as the first characters
of a cell runs as a formula when the CSV is opened in Excel, LibreOffice or Google Sheets (OWASP
"CSV injection"). Such text cells get a leading `'`, which spreadsheets show as a text marker
and do not evaluate; numbers are written as they are.

JSON is strict: Python's json writes NaN and Infinity, which are not JSON (browsers, jq and
most other readers refuse the whole file); here an undefined figure (the precision of a class
with no images) is null.
"""

import csv
import io
import json
import math
from collections.abc import Iterable, Sequence

# what a spreadsheet reads as the start of a formula (tab and CR: some split a cell on them)
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: object) -> object:
    """`value` with a leading `'` when it is text a spreadsheet would run as a formula.

    Text that is a plain number ("-0.5") stays as it is: a spreadsheet reads it as that number.
    """
    if not isinstance(value, str) or not value.startswith(FORMULA_STARTS):
        return value
    try:
        float(value)
    except ValueError:
        return "'" + value
    return value if value.strip() == value else "'" + value


def csv_text(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """CSV text of a header line and rows, every cell passed through `safe_cell`."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([safe_cell(cell) for cell in header])
    writer.writerows([safe_cell(cell) for cell in row] for row in rows)
    return buffer.getvalue()


def _defined(value: object) -> object:
    """`value` with every float that is NaN or infinite (NumPy's too) as None, recursively."""
    if isinstance(value, dict):
        return {key: _defined(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_defined(item) for item in value]
    if hasattr(value, "item") and hasattr(value, "dtype"):  # a NumPy scalar
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def json_text(value: object, indent: int | None = 2, sort_keys: bool = False) -> str:
    """Strict JSON of `value` (NaN and infinities as null), ending in a newline when indented."""
    text = json.dumps(_defined(value), indent=indent, sort_keys=sort_keys, allow_nan=False)
    return text + "\n" if indent is not None else text


def script_json(value: object) -> str:
    """JSON to embed in an HTML <script type="application/json"> element: no value can close
    the element or open a comment (`</script>`, `<!--`), since <, > and & are written as
    \\u escapes, which every JSON reader turns back into the same characters."""
    text = json_text(value, indent=None)
    for char in "<>&\u2028\u2029":
        text = text.replace(char, f"\\u{ord(char):04x}")
    return text
