"""Plain-text helpers shared by the post text and the link card: counting, cutting, cleaning.

* Bluesky limits text in grapheme clusters and UTF-8 bytes. Clusters are counted with the
  ``regex`` module's ``\\X`` (Unicode 15.1 and later, Indic conjuncts included: "नमस्ते" is
  3), as the server counts them: emoji ZWJ sequences, flags, skin tones, combining marks
  and Hangul syllables are one cluster each, and a cut never splits one.
* Cleaning: lone surrogates become U+FFFD, CR/CRLF become LF, other control characters
  (except tab and LF) and BOMs are dropped, outer whitespace is stripped; titles and
  excerpts also get HTML entities decoded and whitespace collapsed to single spaces (an
  excerpt that contains tags goes through :func:`html_to_text`).
* :func:`html_to_text` keeps paragraph breaks as single newlines (one line per block
  element or ``<br>``), with the whitespace inside a line collapsed to single spaces.
"""

from __future__ import annotations

import html as _html
import re

import regex
from selectolax.lexbor import LexborHTMLParser

from skypost.models import Post

__all__ = [
    "ELLIPSIS",
    "utf8_len",
    "grapheme_len",
    "graphemes",
    "fits",
    "truncate",
    "clean_text",
    "single_line",
    "html_to_text",
    "post_title_text",
    "post_excerpt_text",
]

ELLIPSIS = "…"
_MAX_WORD_DROP = 30  # a cut at a word may always drop this many graphemes (else at most half)
_CLUSTER = regex.compile(r"\X")

# --- counting and cutting -----------------------------------------------------


def utf8_len(text: str) -> int:
    """UTF-8 length in bytes (lone surrogates counted as 3 bytes instead of failing)."""
    return len(text.encode("utf-8", "surrogatepass"))


def graphemes(text: str) -> list[str]:
    """The extended grapheme clusters of ``text``, in order."""
    return _CLUSTER.findall(text)


def grapheme_len(text: str) -> int:
    """The number of extended grapheme clusters (what Bluesky calls graphemes)."""
    if text.isascii():
        # ASCII: one cluster per character, except CR LF which is one.
        return len(text) - text.count("\r\n")
    return len(_CLUSTER.findall(text))


def fits(text: str, max_graphemes: int, max_bytes: int) -> bool:
    """Within both limits."""
    return utf8_len(text) <= max_bytes and grapheme_len(text) <= max_graphemes


# Closing/opening punctuation that looks wrong right before an ellipsis.
_TRAILING_CUT = frozenset(",;:-–—([{«“‘„‚/\\&")


def truncate(text: str, max_graphemes: int, max_bytes: int, ellipsis: str = ELLIPSIS) -> str:
    """``text`` unchanged when it fits, else its longest prefix that fits with ``ellipsis``.

    The cut is at a word (the last whitespace) unless that would drop more than half of
    what fits and more than 30 graphemes (a very long word, or a script without spaces:
    then the cut is where the budget ends); it is always on a grapheme cluster boundary.
    Whitespace and dangling punctuation before the ellipsis are dropped.
    Returns "" when not even the ellipsis fits."""
    if fits(text, max_graphemes, max_bytes):
        return text
    budget_g = max_graphemes - grapheme_len(ellipsis)
    budget_b = max_bytes - utf8_len(ellipsis)
    if budget_g < 0 or budget_b < 0:
        return ""
    # At most budget_b code points can fit in budget_b bytes: segment only that prefix.
    prefix = text[: budget_b + 1]
    clusters = graphemes(prefix)
    if len(prefix) < len(text) and clusters:
        clusters.pop()  # the last cluster of a prefix may be incomplete
    count = 0
    used = 0
    for cluster in clusters:
        size = utf8_len(cluster)
        if count + 1 > budget_g or used + size > budget_b:
            break
        count += 1
        used += size
    cut = count
    if cut < len(clusters):
        word_cut = next((i for i in range(cut, 0, -1) if clusters[i].isspace()), 0)
        if word_cut > 0 and cut - word_cut <= max(cut // 2, _MAX_WORD_DROP):
            cut = word_cut
    while cut > 0 and (clusters[cut - 1].isspace() or clusters[cut - 1] in _TRAILING_CUT):
        cut -= 1
    return "".join(clusters[:cut]) + ellipsis


# --- cleaning -------------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ufeff\ufff9-\ufffb]")
_HTML_TAG = re.compile(r"<[A-Za-z/!?]")
_HTML_ENTITY = re.compile(r"&(#\d+|#[xX][0-9a-fA-F]+|[A-Za-z][A-Za-z0-9]*);?")


def clean_text(text: str | None) -> str:
    """Fix lone surrogates, normalise newlines, drop control characters, strip."""
    if not text:
        return ""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub("", text)
    return text.strip()


def single_line(text: str) -> str:
    """Whitespace runs (newlines included) collapsed to single spaces."""
    return " ".join(text.split())


def post_title_text(post: Post) -> str:
    """The title as it goes into the text and the card: entities decoded, one line."""
    title = clean_text(post.title)
    if "&" in title and _HTML_ENTITY.search(title):
        title = _html.unescape(title)
    return single_line(clean_text(title))


def post_excerpt_text(post: Post) -> str:
    """The excerpt (or the text of content_html) as one line of plain text."""
    excerpt = clean_text(post.excerpt)
    if excerpt:
        if _HTML_TAG.search(excerpt):
            excerpt = html_to_text(excerpt)
        elif "&" in excerpt and _HTML_ENTITY.search(excerpt):
            excerpt = _html.unescape(excerpt)
    elif post.content_html:
        excerpt = html_to_text(post.content_html)
    return single_line(clean_text(excerpt))


_DROP_TAGS = [
    "script", "style", "noscript", "template", "head", "svg", "math", "iframe", "object", "embed",
]
_BLOCK_SELECTOR = ", ".join(
    (
        "address", "article", "aside", "blockquote", "dd", "details", "dialog", "div", "dl", "dt",
        "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6",
        "header", "hgroup", "hr", "li", "main", "nav", "ol", "p", "pre", "section", "summary",
        "table", "tr", "ul", "caption", "title",
    )
)


def html_to_text(html: str) -> str:
    """Plain text of an HTML fragment or page.

    Drops script/style/noscript/template (and head, svg, math, iframe, object, embed),
    strips tags, decodes entities; every block element and ``<br>`` starts a new line;
    whitespace inside a line is collapsed to single spaces; empty lines are dropped.
    Lines are joined with a single "\\n"."""
    if not html or not html.strip():
        return ""
    html = clean_text(html.replace("\x00", ""))
    tree = LexborHTMLParser(html)
    tree.strip_tags(_DROP_TAGS)  # detaches the elements with their content
    # U+2029 PARAGRAPH SEPARATOR marks the breaks; newlines in the source are spaces.
    for node in tree.css("br"):
        node.replace_with("\u2029")
    for node in tree.css(_BLOCK_SELECTOR):
        node.insert_before("\u2029")
        node.insert_after("\u2029")
    for node in tree.css("td, th"):
        node.insert_after(" ")
    root = tree.body if tree.body is not None else tree.root
    raw = root.text(deep=True) if root is not None else ""
    lines = (" ".join(line.split()) for line in raw.split("\u2029"))
    return "\n".join(line for line in lines if line)
