"""A letter's BODYSTRUCTURE as a tree, and which of its parts are the text and which are
attachments. One walker for both the importer (snippets, the paper-clip) and the reader (the
letter in full, its attachment list), so the two never disagree about a letter.

Which part is "the text": in multipart/alternative text/plain is preferred (an HTML sibling is
kept as the fallback for a near-empty plain part), HTML only if there is no plain; in
multipart/related the root part (inline pictures are not attachments); in multipart/signed the
signed content (the signature is not an attachment); in multipart/mixed every inline text part,
in order. Everything else that is not shown is an attachment. Nothing here raises on odd
structures.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mail import mime

MAX_TEXT_PARTS = 8
MAX_DEPTH = 40
_SIGNATURES = frozenset(
    {"application/pgp-signature", "application/pkcs7-signature", "application/x-pkcs7-signature"}
)


@dataclass
class Part:
    section: str  # "" for the top-level multipart
    mtype: str
    subtype: str
    params: dict[str, str] = field(default_factory=dict)
    content_id: str = ""
    encoding: str = ""
    size: int = 0  # encoded octets
    disposition: str = ""
    dparams: dict[str, str] = field(default_factory=dict)
    children: list[Part] = field(default_factory=list)
    envelope_subject: str = ""

    @property
    def ctype(self) -> str:
        return f"{self.mtype}/{self.subtype}"

    @property
    def multipart(self) -> bool:
        return self.mtype == "multipart"

    def leaves(self) -> list[Part]:
        if not self.multipart:
            return [self]
        return [leaf for child in self.children for leaf in child.leaves()]

    def find(self, section: str) -> Part | None:
        if self.section == section or (not self.multipart and not self.section and section == "1"):
            return self
        for child in self.children:
            if section == child.section or section.startswith(child.section + "."):
                return child.find(section)
        return None


def as_text(value: Any) -> str:
    """An IMAP string (bytes, maybe raw 8-bit) or NIL as text."""
    if isinstance(value, bytes | bytearray):
        return mime.raw_header_str(bytes(value))
    return "" if value is None else str(value)


def as_count(value: Any) -> int:
    """An IMAP number as a non-negative int (0 for NIL or junk)."""
    try:
        return max(0, int(value))
    except (TypeError, ValueError):
        return 0


def _plist(value: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    if isinstance(value, list):
        for i in range(0, len(value) - 1, 2):
            key = as_text(value[i]).strip().lower()
            if key and key not in out:
                out[key] = as_text(value[i + 1])
    return out


def parse_structure(bs: Any, section: str = "", depth: int = 0) -> Part | None:
    """A BODYSTRUCTURE (as parsed by mail.importer.parse_fetch) to a tree; None if unusable."""
    if not isinstance(bs, list) or not bs or depth > MAX_DEPTH:
        return None
    if isinstance(bs[0], list):  # multipart: parts..., subtype, [params, disposition, ...]
        node = Part(section, "multipart", "mixed")
        idx = 0
        for item in bs:
            if not isinstance(item, list):
                break
            idx += 1
            child = parse_structure(item, f"{section}.{idx}" if section else str(idx), depth + 1)
            if child is not None:
                node.children.append(child)
        rest = bs[idx:]
        if rest and not isinstance(rest[0], list):
            node.subtype = as_text(rest[0]).lower() or "mixed"
        if len(rest) > 1:
            node.params = _plist(rest[1])
        if len(rest) > 2 and isinstance(rest[2], list) and rest[2]:
            node.disposition = as_text(rest[2][0]).lower()
        return node
    node = Part(
        section or "1",
        as_text(bs[0]).lower() or "application",
        as_text(bs[1]).lower() if len(bs) > 1 else "octet-stream",
    )
    node.params = _plist(bs[2]) if len(bs) > 2 else {}
    node.content_id = as_text(bs[3]).strip().strip("<>") if len(bs) > 3 else ""
    node.encoding = as_text(bs[5]).strip().lower() if len(bs) > 5 else ""
    node.size = as_count(bs[6]) if len(bs) > 6 else 0
    basic = 7
    if node.mtype == "text":
        basic = 8
    elif node.mtype == "message" and node.subtype in ("rfc822", "global"):
        basic = 10
        envelope = bs[7] if len(bs) > 7 else None
        if isinstance(envelope, list) and len(envelope) > 1:
            node.envelope_subject = mime.header_text(as_text(envelope[1]), limit=80)
    ext = bs[basic:]
    if len(ext) > 1 and isinstance(ext[1], list) and ext[1]:
        node.disposition = as_text(ext[1][0]).strip().lower()
        node.dparams = _plist(ext[1][1]) if len(ext[1]) > 1 else {}
    return node


def _is_body_text(node: Part) -> bool:
    if node.multipart or node.mtype != "text" or node.subtype not in ("plain", "html"):
        return False
    if node.disposition == "attachment":
        return False
    has_name = bool(node.dparams.get("filename") or node.dparams.get("filename*")) or bool(
        node.params.get("name") or node.params.get("name*")
    )
    return not (has_name and node.disposition != "inline")


@dataclass
class _Plan:
    units: list[list[Part]] = field(default_factory=list)  # candidates, best first
    attachments: list[Part] = field(default_factory=list)


def _flavour(node: Part) -> str | None:
    """'plain' if the subtree shows plain text, 'html' if only HTML, None if neither."""
    probe = _Plan()
    _collect(node, probe)
    kinds = {n.subtype for unit in probe.units for n in unit[:1]}
    if "plain" in kinds:
        return "plain"
    return "html" if "html" in kinds else None


def _first_html(node: Part) -> Part | None:
    if not node.multipart:
        return node if _is_body_text(node) and node.subtype == "html" else None
    if node.subtype == "related" and node.children:
        return _first_html(node.children[0])
    for child in node.children:
        found = _first_html(child)
        if found is not None:
            return found
    return None


def _only_attachments(node: Part, plan: _Plan) -> None:
    """Parts of a subtree that is not shown: only what was explicitly attached."""
    for leaf in node.leaves():
        if leaf.disposition == "attachment":
            plan.attachments.append(leaf)


def _collect(node: Part, plan: _Plan) -> None:
    if not node.multipart:
        if _is_body_text(node):
            plan.units.append([node])
        else:
            plan.attachments.append(node)
        return
    kids = node.children
    if not kids:
        return
    if node.subtype == "alternative":
        flavours = [_flavour(kid) for kid in kids]
        chosen = next((i for i, f in enumerate(flavours) if f == "plain"), None)
        if chosen is None:
            chosen = next((i for i, f in enumerate(flavours) if f == "html"), None)
        for i, kid in enumerate(kids):
            if i == chosen:
                before = len(plan.units)
                _collect(kid, plan)
                unit = plan.units[before] if len(plan.units) > before else None
                if unit is not None and unit[0].subtype == "plain" and not kid.multipart:
                    html = next(
                        (h for k in kids if k is not kid and (h := _first_html(k)) is not None),
                        None,
                    )
                    if html is not None:
                        unit.append(html)  # used if the plain part turns out blank
            elif not kid.multipart and not (
                kid.mtype == "text" and kid.subtype in ("plain", "html")
            ):
                plan.attachments.append(kid)  # e.g. text/calendar beside the text
            else:
                _only_attachments(kid, plan)
        return
    if node.subtype == "related":
        start = node.params.get("start", "").strip().strip("<>")
        root = next((k for k in kids if start and k.content_id == start), kids[0])
        _collect(root, plan)
        for kid in kids:
            if kid is not root:
                _only_attachments(kid, plan)
        return
    if node.subtype in ("signed", "encrypted"):
        _collect(kids[0], plan)
        for kid in kids[1:]:
            if kid.ctype not in _SIGNATURES:
                _collect(kid, plan)
        return
    for kid in kids:  # mixed, report, digest, parallel, unknown
        _collect(kid, plan)


def plan_letter(tree: Part | None) -> tuple[list[list[Part]], list[Part]]:
    """(text units, attachment leaves) of a BODYSTRUCTURE tree."""
    if tree is None:
        return [], []
    plan = _Plan()
    try:
        _collect(tree, plan)
    except RecursionError:  # pragma: no cover - MAX_DEPTH keeps trees shallow
        return [], []
    return plan.units[:MAX_TEXT_PARTS], plan.attachments


# --------------------------------------------------------------------------- importer's view
@dataclass(slots=True)
class TextPart:
    section: str
    subtype: str  # "plain" | "html"
    charset: str | None
    encoding: str | None


@dataclass(slots=True)
class Structure:
    """What the importer needs of a letter: its text parts and whether it has attachments."""

    text_parts: list[TextPart] = field(default_factory=list)
    has_attachments: bool = False

    def best(self) -> TextPart | None:
        for sub in ("plain", "html"):
            for part in self.text_parts:
                if part.subtype == sub:
                    return part
        return None


def analyse_structure(bs: Any) -> Structure:
    """The importer's summary of a BODYSTRUCTURE (as parsed by mail.importer.parse_fetch),
    with the same choice of text and attachments as the reader's :func:`plan_letter`."""
    units, attachments = plan_letter(parse_structure(bs))
    heads = [unit[0] for unit in units if unit]
    return Structure(
        [TextPart(p.section, p.subtype, p.params.get("charset"), p.encoding or None) for p in heads],
        bool(attachments),
    )
