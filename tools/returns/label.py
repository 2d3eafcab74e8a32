"""Return labels: a real PDF with the RMA number (as text and a Code 128 barcode), the
customer's address and the warehouse's, stored by reference — a path, never the bytes in
workflow history."""

from __future__ import annotations

import hashlib
from pathlib import Path

from reportlab.graphics.barcode import code128
from reportlab.lib.pagesizes import A6
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.pdfgen import canvas

_FONT = "STSong-Light"  # a CID font reportlab ships: Chinese addresses render without font files
pdfmetrics.registerFont(UnicodeCIDFont(_FONT))


def render_label(path: Path, *, rma: str, order_id: str, sender: str, recipient: str) -> str:
    """Write the label to ``path`` (the same inputs give the same file); return its SHA-256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pdf = canvas.Canvas(str(path), pagesize=A6, invariant=True)
    _, height = A6
    pdf.setFont(_FONT, 16)
    pdf.drawString(8 * mm, height - 14 * mm, f"RETURN {rma}")
    code128.Code128(rma, barHeight=14 * mm, barWidth=0.35 * mm).drawOn(pdf, 6 * mm, height - 34 * mm)
    pdf.setFont(_FONT, 9)
    y = height - 44 * mm
    for title, text in (("FROM", sender), ("TO", recipient), ("ORDER", order_id)):
        pdf.drawString(8 * mm, y, title)
        pdf.drawString(24 * mm, y, text[:60])
        y -= 8 * mm
    pdf.showPage()
    pdf.save()
    return hashlib.sha256(path.read_bytes()).hexdigest()
