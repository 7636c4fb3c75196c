"""CSV text as the toolkit writes it: every cell safe to open in a spreadsheet.

A file name such as `=cmd|' /C calc'!A0.jpg` or `@SUM(1+1).jpg` written as the first characters
of a cell runs as a formula when the CSV is opened in Excel, LibreOffice or Google Sheets (OWASP
"CSV injection"). Such text cells get a leading `'`, which spreadsheets show as a text marker
and do not evaluate; numbers are written as they are.
"""

import csv
import io
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
