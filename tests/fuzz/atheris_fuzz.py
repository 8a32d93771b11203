"""Coverage-guided fuzzing with atheris (libFuzzer) — run as a script, not collected by pytest.

    .venv/bin/pip install atheris          # not a project dependency (a binary wheel on x86-64 Linux)
    .venv/bin/python tests/fuzz/atheris_fuzz.py document -atheris_runs=200000
    .venv/bin/python tests/fuzz/atheris_fuzz.py feed -max_total_time=600 /tmp/feed-corpus
    .venv/bin/python tests/fuzz/atheris_fuzz.py compose -max_len=4096

Targets:
  document  bytes -> a JSON-like document (fields and values drawn from the bytes: strings with
            any code point, huge ints, floats, lists, objects) -> parse_post_document: a Post
            (valid Unicode, round-trips through its own document) or a ValidationError naming
            fields; any other exception is a crash.
  feed      bytes -> parse_feed (seeded with the RSS/Atom documents of the pytest fuzzers): a
            ParsedFeed or a FeedParseError; each entry becomes a Post or a ValidationError.
  compose   bytes -> a Post -> compose_post_record (offline): within 300 graphemes and 3000
            bytes, facets inside the text on character boundaries.

Options after the target go to libFuzzer (-atheris_runs=N, -max_total_time=S, a corpus folder;
without a folder, feed starts from seeds written to $TMPDIR/skypost-feed-corpus).
A crash writes crash-<sha1> (the input) in the current folder; replay it with the same command
and the file as the only argument.
"""

from __future__ import annotations

import os
import sys
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import atheris  # noqa: E402

with atheris.instrument_imports(include=["skypost"]):
    from skypost.bluesky.compose import MAX_BYTES, MAX_GRAPHEMES, compose_post_record, grapheme_len
    from skypost.models import Post, ValidationError, parse_post_document
    from skypost.sources.entries import FeedParseError, entry_to_post, parse_feed

NOW = datetime(2026, 5, 1, tzinfo=timezone.utc)


def _check_post(post: Post) -> None:
    for value in (post.id, post.title, post.url, post.excerpt, post.content_html, post.image_url, post.text,
                  *post.categories, *post.tags, *post.langs, *post.accounts):
        value.encode("utf-8")  # UnicodeEncodeError: accepted text that cannot be stored
    if parse_post_document(post.to_document()) != post:
        raise AssertionError(f"{post!r} does not round-trip through its document")


FIELDS = ("id", "title", "url", "excerpt", "content_html", "image_url", "text", "categories", "tags", "langs",
          "published_at", "accounts", "dont_syndicate", "post_type", "unknown")
PLAUSIBLE = {"url": "https://blog.example.com/", "image_url": "http://[::1]:8080/", "published_at": "2024-05-01T10:00",
             "langs": "en-", "accounts": "alice.", "id": "", "title": "", "text": ""}


def _value(fdp: "atheris.FuzzedDataProvider", field: str, depth: int = 0) -> object:
    kind = fdp.ConsumeIntInRange(0, 9)
    if kind <= 4:  # a string, often starting like a good value; ConsumeUnicode includes lone surrogates
        return PLAUSIBLE.get(field, "") * fdp.ConsumeBool() + fdp.ConsumeUnicode(fdp.ConsumeIntInRange(0, 40))
    if kind == 5:
        return fdp.ConsumeInt(fdp.ConsumeIntInRange(1, 2000))  # up to 16,000 bits
    if kind == 6:
        return fdp.ConsumeBool() if fdp.ConsumeBool() else None
    if kind == 7:
        return fdp.ConsumeFloat()
    if depth < 2:
        if kind == 8:
            return [_value(fdp, field, depth + 1) for _ in range(fdp.ConsumeIntInRange(0, 4))]
        return {fdp.ConsumeUnicode(5): _value(fdp, field, depth + 1) for _ in range(fdp.ConsumeIntInRange(0, 3))}
    return ""


def fuzz_document(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    doc = {"id": "1", "title": "A title", "url": "https://blog.example.com/a"} if fdp.ConsumeBool() else {}
    for _ in range(fdp.ConsumeIntInRange(0, 6)):
        field = FIELDS[fdp.ConsumeIntInRange(0, len(FIELDS) - 1)]
        doc[field] = _value(fdp, field)
    try:
        post = parse_post_document(doc)
    except ValidationError as exc:
        if not exc.errors:
            raise AssertionError("a ValidationError without errors") from exc
        return
    _check_post(post)


def fuzz_feed(data: bytes) -> None:
    try:
        parsed = parse_feed(data, base_url="https://blog.example.com/feed.xml")
    except FeedParseError as exc:
        if not exc.reason:
            raise AssertionError("a FeedParseError without a reason") from exc
        return
    for entry in parsed.entries:
        try:
            post = entry_to_post(entry, feed_id=1)
        except ValidationError:
            continue
        _check_post(post)


def fuzz_compose(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    text = fdp.ConsumeUnicodeNoSurrogates
    post = Post(id="1", title=text(fdp.ConsumeIntInRange(0, 600)), url="https://blog.example.com/a",
                excerpt=text(fdp.ConsumeIntInRange(0, 600)), content_html=text(fdp.ConsumeIntInRange(0, 600)),
                text=text(fdp.ConsumeIntInRange(0, 600)) if fdp.ConsumeBool() else "",
                tags=tuple(text(20) for _ in range(fdp.ConsumeIntInRange(0, 10))))
    record = compose_post_record(post, now=NOW, fetcher=None, upload_blob=None).record
    body = record["text"].encode("utf-8")
    if grapheme_len(record["text"]) > MAX_GRAPHEMES or len(body) > MAX_BYTES:
        raise AssertionError(f"text over the limits: {record['text']!r}")
    end = 0
    for facet in record.get("facets", []):
        start, stop = facet["index"]["byteStart"], facet["index"]["byteEnd"]
        if not end <= start < stop <= len(body):
            raise AssertionError(f"facet outside the text or overlapping: {facet}")
        body[start:stop].decode("utf-8")
        end = stop


def _feed_seeds(folder: Path) -> None:
    """Write a starting corpus into `folder`: the pytest fuzzers' seed feeds."""
    from tests.fuzz.test_fuzz_feeds import SEEDS

    folder.mkdir(parents=True, exist_ok=True)
    for n, seed in enumerate(SEEDS):
        (folder / f"seed-{n}").write_bytes(seed)


TARGETS = {"document": fuzz_document, "feed": fuzz_feed, "compose": fuzz_compose}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        sys.exit(f"usage: {sys.argv[0]} {{{'|'.join(TARGETS)}}} [libFuzzer options] [corpus folder]")
    target = sys.argv.pop(1)
    if target == "feed" and not any(os.path.isdir(a) for a in sys.argv[1:]):
        corpus = Path(os.environ.get("TMPDIR", "/tmp")) / f"skypost-{target}-corpus"
        _feed_seeds(corpus)
        sys.argv.append(str(corpus))
    atheris.Setup(sys.argv, TARGETS[target])
    atheris.Fuzz()


if __name__ == "__main__":
    main()
