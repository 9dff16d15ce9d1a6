"""The Dockerfile parser, variable expansion and .dockerignore patterns (pure)."""

from __future__ import annotations

import pytest

from minicontainer.images.builder import _ignore_rules
from minicontainer.images.dockerfile import DockerfileError, expand, key_values, parse

pytestmark = pytest.mark.unit


def test_parse_joins_continuations_skips_comments_and_reads_both_forms():
    ins = parse("# c\nFROM mini AS base\nRUN echo a \\\n  # inside\n  && echo b\nCMD [\"/bin/sh\", \"-c\", \"x\"]\n"
                "COPY --from=base --chown=1:2 /a /b\n")
    assert [(i.line, i.keyword) for i in ins] == [(2, "FROM"), (3, "RUN"), (6, "CMD"), (7, "COPY")]
    assert ins[1].args == "echo a  && echo b" and ins[1].exec_form is None
    assert ins[2].exec_form == ("/bin/sh", "-c", "x")
    assert ins[3].flag("from") == "base" and ins[3].flag("chown") == "1:2" and ins[3].args == "/a /b"


@pytest.mark.parametrize("text, message", [
    ("FROM mini\nBOGUS x\n", "Dockerfile:2: unknown instruction 'BOGUS'"),
    ("RUN true\n", "the first instruction must be FROM"),
    ("FROM mini\nWORKDIR\n", "Dockerfile:2: WORKDIR needs arguments"),
    ("FROM mini\nCOPY --mode=7 a b\n", "Dockerfile:2: COPY has no flag --mode"),
])
def test_parse_errors_name_the_line(text, message):
    with pytest.raises(DockerfileError, match=message):
        parse(text)


def test_expand_and_key_values():
    v = {"A": "1", "E": ""}
    assert expand("$A ${A} ${B:-dflt} ${E:-e} ${A:+set} ${B:+no} \\$A", v) == "1 1 dflt e set  $A"
    assert key_values('K=v "Q=a b"', "ENV") == [("K", "v"), ("Q", "a b")]
    assert key_values("K some value", "ENV") == [("K", "some value")]
    assert key_values("NAME", "ARG") == [("NAME", None)]


def test_dockerignore_patterns(tmp_path):
    (tmp_path / ".dockerignore").write_text("# comment\n**/*.log\nsecrets\n!keep.log\n/tmp?\n")
    ignored = _ignore_rules(str(tmp_path))
    assert ignored("a.log") and ignored("x/y/a.log") and ignored("secrets/key") and ignored("tmp1")
    assert not ignored("keep.log") and not ignored("src/app.js") and not ignored("tmp12")
