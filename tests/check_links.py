#!/usr/bin/env python3
"""check_links.py: every link in the documentation resolves (run by `make test` and `make check`).

Checks README.md and docs/*.md (or the files given as arguments), outside code blocks:
  - each relative Markdown link [text](PATH) or [text](PATH#ANCHOR) names a file or folder of the
    repository, and its #ANCHOR (or a bare [text](#ANCHOR)) a heading of that file, as GitHub
    spells heading anchors;
  - each repository path written in backticks (`src/config/job.c`, `tests/slurm/`), so that a
    source map or a "see FILE" cannot go stale when files move. Only paths under the folders in
    PATH_ROOTS count; a path with a wildcard or a placeholder (*, <, {) is not checked.
Prints FILE:LINE: and what is broken for each, and exits 1 when anything is; 0 when all resolve.
--self-test first checks that the checker itself catches each kind of break (make check-links).
"""
import os
import re
import shutil
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PATH_ROOTS = ("src/", "include/", "tests/", "jobs/", "bench/", "docs/", "data/", ".ci/")
LINK = re.compile(r"(?<!!)\[(?:[^\]\\]|\\.)*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
CODE_SPAN = re.compile(r"`([^`\n]+)`")
REPO_PATH = re.compile(r"^[A-Za-z0-9_.\-/]+$")


def slug(heading):
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`([^`]*)`", r"\1", heading.strip())
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link in a heading: its text
    text = text.lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def prose_lines(path):
    """(line number, text) of the lines outside fenced and indented code blocks."""
    fenced = False
    prev_blank = True
    in_indented = False
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            s = line.rstrip("\n")
            if s.lstrip().startswith("```"):
                fenced = not fenced
                continue
            if fenced:
                continue
            indented = s.startswith("    ") or s.startswith("\t")
            # an indented block starts after a blank line and is not a list's continuation
            if indented and (prev_blank or in_indented) and not s.lstrip().startswith(("-", "*", "|")):
                in_indented = True
                prev_blank = False
                continue
            in_indented = False
            prev_blank = not s.strip()
            yield n, s


_anchors = {}


def anchors(path):
    if path not in _anchors:
        seen = {}
        out = set()
        for _, s in prose_lines(path):
            m = re.match(r"^(#{1,6})\s+(.*?)\s*#*\s*$", s)
            if not m:
                continue
            base = slug(m.group(2))
            k = seen.get(base, 0)
            seen[base] = k + 1
            out.add(base if k == 0 else "%s-%d" % (base, k))
        _anchors[path] = out
    return _anchors[path]


def check_link(src, target):
    """None when target resolves from file src, else why not."""
    if re.match(r"^[a-z][a-z0-9+.\-]*:", target, re.I) or target.startswith("//"):
        return None  # http:, mailto:: not ours to check offline
    path, _, anchor = target.partition("#")
    if path:
        if path.startswith("/"):
            return "absolute path: links must be relative to the file"
        full = os.path.normpath(os.path.join(os.path.dirname(src), path))
        if not full.startswith(REPO + os.sep) and full != REPO:
            return "outside the repository"
        if not os.path.exists(full):
            return "no such file: %s" % os.path.relpath(full, REPO)
    else:
        full = src
    if anchor:
        if not full.endswith(".md") or os.path.isdir(full):
            return "an anchor into a file that is not Markdown"
        if anchor not in anchors(full):
            return "no heading #%s in %s" % (anchor, os.path.relpath(full, REPO))
    return None


def check_file(src):
    problems = []
    rel = os.path.relpath(src, REPO)
    for n, s in prose_lines(src):
        for m in LINK.finditer(s):
            why = check_link(src, m.group(1))
            if why:
                problems.append("%s:%d: broken link '%s': %s" % (rel, n, m.group(1), why))
        for m in CODE_SPAN.finditer(s):
            p = m.group(1).strip()
            if not p.startswith(PATH_ROOTS) or not REPO_PATH.match(p) or ".." in p:
                continue
            if not os.path.exists(os.path.join(REPO, p)):
                problems.append("%s:%d: path `%s` does not exist in the repository" % (rel, n, p))
    return problems


SELF_TEST = """# Title
## A heading, with `code`
[good](../README.md) [good anchor](#a-heading-with-code) [good too](../docs/jobs.md#job-files)
`src/config/job.c` `src/layers/<kind>.c` [web](https://example.org/x)
[no file](no-such-page.md)
[no anchor](#no-such-heading)
`src/no_such_file.c`

    [in a code block](not-checked.md)
"""


def self_test():
    """The checker must report exactly the three broken lines of SELF_TEST (lines 5-7)."""
    tmp = tempfile.mkdtemp(prefix=".check_links-", dir=REPO)
    try:
        path = os.path.join(tmp, "self-test.md")
        with open(path, "w", encoding="utf-8") as f:
            f.write(SELF_TEST)
        got = sorted(int(p.split(":")[1]) for p in check_file(path))
    finally:
        shutil.rmtree(tmp)
    if got != [5, 6, 7]:
        print("check_links: self-test failed: broken lines reported %s, expected [5, 6, 7]" % got)
        return 1
    return 0


def main(argv):
    if argv[1:2] == ["--self-test"]:
        if self_test():
            return 1
        argv = argv[:1] + argv[2:]
    files = argv[1:]
    if not files:
        docs = os.path.join(REPO, "docs")
        files = [os.path.join(REPO, "README.md")]
        files += sorted(os.path.join(docs, f) for f in os.listdir(docs) if f.endswith(".md"))
    problems = []
    for f in files:
        problems += check_file(os.path.abspath(f))
    for p in problems:
        print(p)
    if problems:
        print("check_links: %d broken link(s) in %d file(s)" % (len(problems), len(files)))
        return 1
    print("check_links: every link and path in %d file(s) resolves" % len(files))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
