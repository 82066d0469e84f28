"""Unit tests of tests/docker/build_without_docker.py that need no root and no
network (ctest `docker_interpreter`, part of `make test`): the repository's
Dockerfile uses only what the interpreter supports (so a Dockerfile change
that it cannot build as Docker would fails here, not half an hour into a
release check), and the parser, variable substitution and .dockerignore
rules behave as Docker's.

    /usr/bin/python3 tests/docker/build_without_docker_test.py SOURCE_DIR
"""

import importlib.util
import os
import sys
import tempfile
import unittest

SOURCE = None  # the repository, set in main()
bwd = None     # the module under test


def load(source):
    spec = importlib.util.spec_from_file_location(
        "build_without_docker",
        os.path.join(source, "tests", "docker", "build_without_docker.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class RepositoryDockerfileTest(unittest.TestCase):

    def test_every_instruction_is_supported(self):
        with open(os.path.join(SOURCE, "Dockerfile")) as f:
            instructions = bwd.parse_dockerfile(f.read())
        bwd.validate(instructions)  # raises BuildError naming the line
        keywords = [i.keyword for i in instructions]
        self.assertEqual(keywords.count("FROM"), 2)
        self.assertEqual(keywords[-2:], ["ENTRYPOINT", "CMD"])

    def test_stages_resolve_to_debian_12(self):
        with open(os.path.join(SOURCE, "Dockerfile")) as f:
            instructions = bwd.parse_dockerfile(f.read())
        args = {}
        for i in instructions:
            if i.keyword == "ARG":
                name, _, value = i.rest.partition("=")
                args[name] = value
            if i.keyword == "FROM":
                image = bwd.substitute(i.rest.split()[0], args, i)
                self.assertIn(image, bwd.DEBIAN_12_IMAGES)

    def test_the_build_context_keeps_the_sources(self):
        ignore = bwd.DockerIgnore(SOURCE)
        for kept in ("CMakeLists.txt", "server/bursard.cc",
                     "scripts/install-deps.sh", "policies/example"):
            self.assertFalse(ignore.excluded(kept), kept)
        for left_out in (".git", "build", "build/server/bursard",
                         "build-asan/x", "examples/node/node_modules/x"):
            self.assertTrue(ignore.excluded(left_out), left_out)


class ParserTest(unittest.TestCase):

    def test_continuations_and_comments(self):
        text = ("# a comment\n"
                "ARG A=1\n"
                "\n"
                "FROM debian:12 AS one\n"
                "RUN echo a \\\n"
                "# a comment inside a continuation is dropped\n"
                "  && echo b\n"
                "cmd [\"x\"]\n")
        instructions = bwd.parse_dockerfile(text)
        self.assertEqual([(i.line, i.keyword) for i in instructions],
                         [(2, "ARG"), (4, "FROM"), (5, "RUN"), (8, "CMD")])
        self.assertEqual(instructions[2].rest, "echo a   && echo b")

    def test_unsupported_instruction_names_its_line(self):
        instructions = bwd.parse_dockerfile(
            "FROM debian:12\nRUN true\nHEALTHCHECK CMD true\n")
        with self.assertRaisesRegex(bwd.BuildError,
                                    r"Dockerfile:3: HEALTHCHECK: .*not "
                                    "supported"):
            bwd.validate(instructions)

    def test_unknown_flags_and_wildcards_fail(self):
        for text, message in (
                ("FROM debian:12\nRUN --mount=type=cache,target=/x true\n",
                 r"Dockerfile:2: RUN: the flag --mount"),
                ("FROM debian:12\nCOPY --chown=1:1 a /a\n",
                 r"Dockerfile:2: COPY: the flag --chown"),
                ("FROM debian:12\nCOPY *.txt /a/\n", r"wildcards"),
                ("RUN true\n", r"first instruction"),
                ("FROM debian:12\nSHELL /bin/bash -c\n", r"JSON form")):
            with self.assertRaisesRegex(bwd.BuildError, message, msg=text):
                bwd.validate(bwd.parse_dockerfile(text))

    def test_substitution(self):
        where = bwd.Instruction(1, "FROM", "")
        variables = {"IMAGE": "debian:12", "EMPTY": ""}
        self.assertEqual(bwd.substitute("${IMAGE}", variables, where),
                         "debian:12")
        self.assertEqual(bwd.substitute("$IMAGE-x", variables, where),
                         "debian:12-x")
        self.assertEqual(bwd.substitute("${EMPTY:-def}", variables, where),
                         "def")
        self.assertEqual(bwd.substitute("${IMAGE:+set}", variables, where),
                         "set")
        self.assertEqual(bwd.substitute(r"\$IMAGE", variables, where),
                         "$IMAGE")
        with self.assertRaises(bwd.BuildError):
            bwd.substitute("${IMAGE", variables, where)

    def test_json_and_shell_forms(self):
        self.assertEqual(bwd.json_array('["/bin/bash", "-c"]'),
                         ["/bin/bash", "-c"])
        self.assertIsNone(bwd.json_array("echo [x]"))
        self.assertIsNone(bwd.json_array("[not json"))


class DockerIgnoreTest(unittest.TestCase):

    def ignore(self, text):
        directory = tempfile.mkdtemp()
        with open(os.path.join(directory, ".dockerignore"), "w") as f:
            f.write(text)
        return bwd.DockerIgnore(directory)

    def test_patterns_are_anchored_at_the_root(self):
        ignore = self.ignore("*.swp\nbuild*/\n")
        self.assertTrue(ignore.excluded("x.swp"))
        self.assertFalse(ignore.excluded("sub/x.swp"))
        self.assertTrue(ignore.excluded("build-tsan/a/b"))
        self.assertFalse(ignore.excluded("sub/build/a"))

    def test_double_star_and_exceptions(self):
        ignore = self.ignore("**/node_modules/\ndocs\n!docs/keep.md\n")
        self.assertTrue(ignore.excluded("node_modules/a"))
        self.assertTrue(ignore.excluded("a/b/node_modules/c"))
        self.assertTrue(ignore.excluded("docs/other.md"))
        self.assertFalse(ignore.excluded("docs/keep.md"))
        self.assertFalse(ignore.excluded("src/node_modulesx"))

    def test_last_matching_rule_wins(self):
        ignore = self.ignore("!a.txt\n*.txt\n")
        self.assertTrue(ignore.excluded("a.txt"))
        ignore = self.ignore("*.txt\n!a.txt\n")
        self.assertFalse(ignore.excluded("a.txt"))
        self.assertTrue(ignore.excluded("b.txt"))


def main():
    global SOURCE, bwd
    if len(sys.argv) < 2:
        print(f"usage: {sys.argv[0]} SOURCE_DIR", file=sys.stderr)
        return 2
    SOURCE = os.path.abspath(sys.argv[1])
    bwd = load(SOURCE)
    result = unittest.main(argv=[sys.argv[0], "-v", *sys.argv[2:]],
                           exit=False).result
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
