"""The tables (mbmt.reporting.tables) written out: Markdown (the index's), CSV (the numbers whole)
and HTML (a page of its own, for Snakemake's report). Rendering only: every number and note comes
in the Table as built.
"""

from __future__ import annotations

import csv
import html
import io

from mbmt.reporting.tables import Cell, Num, Table


def _numeric_columns(table: Table) -> list[bool]:
    return [any(isinstance(row[i], Num) for row in table.rows) for i in range(len(table.columns))]


def _text(cell: Cell) -> str:
    return "–" if cell is None else str(cell)


def to_markdown(table: Table) -> str:
    def text(cell: Cell) -> str:
        return _text(cell).replace("|", "\\|")

    numeric = _numeric_columns(table)
    lines = [f"## {table.title}", "",
             "| " + " | ".join(table.columns) + " |",
             "| " + " | ".join("---:" if n else "---" for n in numeric) + " |"]
    lines += ["| " + " | ".join(text(cell) for cell in row) + " |" for row in table.rows]
    if table.notes:
        lines += [""] + [f"- {note}" for note in table.notes]
    return "\n".join(lines) + "\n"


def to_csv(table: Table) -> str:
    """The numbers whole; a column with spreads or significance marks gets "<column> std" and
    "<column> significant" columns beside it."""
    def raw(cell: Cell):
        if cell is None:
            return ""
        return cell.value if isinstance(cell, Num) else cell

    def extras(cell: Cell, std: bool, significant: bool) -> list:
        number = cell if isinstance(cell, Num) else None
        out = []
        if std:
            out.append("" if number is None or number.std is None else number.std)
        if significant:
            out.append("" if number is None or number.significant is None else ("yes" if number.significant else "no"))
        return out

    has = [(any(isinstance(row[i], Num) and row[i].std is not None for row in table.rows),
            any(isinstance(row[i], Num) and row[i].significant is not None for row in table.rows))
           for i in range(len(table.columns))]
    header = []
    for column, (std, significant) in zip(table.columns, has):
        header += [column] + ([f"{column} std"] if std else []) + ([f"{column} significant"] if significant else [])
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for row in table.rows:
        writer.writerow([value for cell, flags in zip(row, has) for value in [raw(cell), *extras(cell, *flags)]])
    return out.getvalue()


# Self-contained, so that Snakemake's HTML report shows the table as it is (it embeds each file).
HTML_STYLE = ("body{font-family:sans-serif;font-size:14px;margin:1em}table{border-collapse:collapse}"
              "th,td{border:1px solid #ccc;padding:3px 8px}th{background:#eee}td.num{text-align:right}")


def to_html(table: Table) -> str:
    numeric = _numeric_columns(table)

    def row(cells, tag: str) -> str:
        opening = [f'<{tag} class="num">' if tag == "td" and n else f"<{tag}>" for n in numeric]
        return "<tr>" + "".join(f"{opening[i]}{html.escape(_text(cell))}</{tag}>" for i, cell in enumerate(cells)) + "</tr>"

    title = html.escape(table.title)
    lines = ["<!doctype html>", '<html lang="en"><head><meta charset="utf-8">', f"<title>{title}</title>",
             f"<style>{HTML_STYLE}</style></head><body>", f"<h2>{title}</h2>", "<table>",
             f"<thead>{row(table.columns, 'th')}</thead>", "<tbody>", *(row(r, "td") for r in table.rows),
             "</tbody></table>"]
    if table.notes:
        lines += ["<ul>", *(f"<li>{html.escape(note)}</li>" for note in table.notes), "</ul>"]
    lines.append("</body></html>")
    return "\n".join(lines) + "\n"
