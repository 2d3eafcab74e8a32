"""Who may read what: a document's department and classification against the reader's.

- ``public``: everyone;
- ``internal``: the members of the document's department;
- ``confidential``: the members of its department cleared for ``confidential``.

Retrieval applies this before ranking (a document the reader may not see is never a
candidate), and the permission gate applies it again through the Cedar policy in
``policies/knowledge.cedar`` on the ``knowledge.read`` action, whose resource carries the
same two attributes (:func:`strictest`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from chamberlain.tools.knowledge.corpus import Classification, Document

LEVELS: tuple[Classification, ...] = ("public", "internal", "confidential")
CLEARANCE = "confidential"  # the clearance label that opens confidential documents
MIXED = "*mixed*"  # the department of a set of documents from several departments: no one's


@dataclass(frozen=True)
class Reader:
    """Whose eyes a search is for. ``department=None``: someone outside every department
    (a partner installer), who reads public documents only."""

    department: str | None
    cleared: bool = False

    @property
    def ceiling(self) -> Classification:
        """The most secret classification this reader may read in their own department."""
        if self.department is None:
            return "public"
        return "confidential" if self.cleared else "internal"

    def may_read(self, document: Document) -> bool:
        if document.classification == "public":
            return True
        return document.department == self.department and LEVELS.index(document.classification) <= LEVELS.index(
            self.ceiling
        )


def strictest(documents: Iterable[Document]) -> dict[str, str]:
    """The resource attributes of reading ``documents`` together: the department of their
    non-public ones (:data:`MIXED` if several) and their highest classification. A reader may
    read all of them exactly when :meth:`Reader.may_read` would allow these attributes."""
    found = list(documents)
    restricted = {d.department for d in found if d.classification != "public"}
    level = max((LEVELS.index(d.classification) for d in found), default=0)
    department = MIXED if len(restricted) > 1 else next(iter(restricted), "")
    return {"department": department, "classification": LEVELS[level]}
