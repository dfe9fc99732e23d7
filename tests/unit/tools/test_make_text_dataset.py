"""The text example's data tool: a manual page's NAME line, and the per-class sample."""
import gzip

from tools.make_text_dataset import description, pages, sample

LS_PAGE = """.TH LS "1" "April 2024" "GNU coreutils 9.4" "User Commands"
.SH NAME
ls \\- list directory contents
.SH SYNOPSIS
.B ls
"""


def test_the_description_is_the_name_lines_text_after_the_dash():
    assert description(LS_PAGE) == "list directory contents"
    assert description('.SH "NAME"\nmalloc, free \\- allocate and free\n.br\ndynamic \\fBmemory\\fR\n.SH X\n') == \
        "allocate and free dynamic memory"
    assert description(".SH SYNOPSIS\nls\n") is None


def test_pages_are_labelled_by_section_and_cloud_sdk_and_perl_pages_are_left_out(tmp_path):
    for section, name in [("1", "ls.1"), ("1", "gcloud_compute.1"), ("3", "Foo::Bar.3pm"), ("5", "passwd.5"),
                          ("8", "useradd.8"), ("3", "strlen.3")]:
        (tmp_path / f"man{section}").mkdir(exist_ok=True)
        with gzip.open(tmp_path / f"man{section}" / f"{name}.gz", "wt") as f:
            f.write(LS_PAGE.replace("ls \\- list directory contents", f"{name} \\- about {name}"))
    found = sorted(pages(str(tmp_path)))
    assert found == [("ls.1", "about ls.1", "command"), ("passwd.5", "about passwd.5", "file"),
                     ("strlen.3", "about strlen.3", "function"), ("useradd.8", "about useradd.8", "command")]
    rows = [(f"p{i}", f"text {i % 5}", "command") for i in range(10)] + [("f", "a file", "file")]
    assert sample(rows, 3, seed=1) == sorted(sample(rows, 3, seed=1))
    assert len(sample(rows, 3, seed=1)) == 4  # 5 distinct command texts, 3 drawn; the one file
