"""Fuzz tests (hypothesis): the post-document parser, the HTTP API and webhooks, feed parsing,
the composer. Each file runs in well under 20 s; SKYPOST_FUZZ_SCALE=20 multiplies the examples
for a long local session. atheris_fuzz.py is a coverage-guided harness run as a script (see its
docstring); pytest does not collect it."""
