#!/usr/bin/python3
"""Builds the repository's Dockerfile without Docker, then runs the image.

For maintainers, before a release (docs/operations.md, "The container
image"); never part of `make test`: it bootstraps a Debian 12 root filesystem
and builds the tree from scratch, which takes far longer than CI allows.

    sudo tests/docker/build_without_docker.py [--dockerfile Dockerfile]
        [--context .] [--build-arg NAME=VALUE] [--cache DIR] [--work DIR]
        [--no-run] [--keep]

Needs root (debootstrap, chroot, mounts) and Linux namespaces (unshare).

What it does, instruction by instruction, as written in the Dockerfile:

  FROM debian:12|debian:bookworm [AS name]
                a copy of a Debian 12 root filesystem made once with
                `debootstrap --variant=minbase bookworm` from the apt mirror
                this machine is configured with (/etc/apt/sources.list*;
                no other network), cached in --cache;
  FROM <stage>  a copy of that earlier stage's root filesystem;
  ARG, ENV      build arguments (--build-arg overrides) and environment
                variables, in scope as Docker scopes them, substituted in
                FROM, WORKDIR, COPY, USER, EXPOSE and ENV, and given to RUN;
  SHELL         the JSON shell of the stage's later shell-form RUNs;
  WORKDIR       created if missing, relative ones resolved;
  COPY [--from=stage] src... dest
                from the build context filtered by .dockerignore (Docker's
                rules: patterns anchored at the context root, `**`, `!`
                exceptions, the last matching pattern wins), or from an
                earlier stage; files end up owned by root as in Docker;
  RUN           in a chroot of the stage with /proc mounted and /dev bound
                (in a private mount namespace, so nothing stays mounted),
                as the current USER, in WORKDIR, with Docker's default PATH,
                the ARGs and ENVs in scope, and the host's resolv.conf;
  USER, EXPOSE, ENTRYPOINT, CMD, LABEL
                recorded.

Anything else (another instruction, a flag it does not know, a wildcard in a
COPY source, an image other than Debian 12) stops the build with an error
naming the line: the interpreter cannot drift silently from the Dockerfile.

Then it runs the final stage's ENTRYPOINT + CMD as its USER
(`chroot --userspec`) in its WORKDIR, in a private network namespace (only
loopback: no port conflicts, nothing exposed) on a read-only view of the
root filesystem with a writable /tmp and a writable volume at the WORKDIR
(the Helm chart's layout: readOnlyRootFilesystem, an emptyDir at /tmp and the
data PVC at /var/lib/bursar), waits until the gRPC health service on the
first EXPOSEd port answers SERVING and GET /readyz and /healthz on the second
answer 200, sends SIGTERM and expects exit code 0.

Exit code 0 when all of it worked; 1 with the reason otherwise.
"""

import argparse
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time

DOCKER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEBIAN_12_IMAGES = {"debian:12", "debian:bookworm", "docker.io/library/debian:12",
                    "docker.io/library/debian:bookworm", "library/debian:12"}


class BuildError(Exception):
    pass


def log(message):
    print(f"[build_without_docker {time.strftime('%H:%M:%S')}] {message}",
          flush=True)


def run(argv, **kwargs):
    """Runs a host command; BuildError with its output if it fails."""
    result = subprocess.run(argv, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        raise BuildError(f"{shlex.join(argv)} failed ({result.returncode}):\n"
                         f"{result.stdout}{result.stderr}")
    return result.stdout


# --- The Dockerfile ---------------------------------------------------------

class Instruction:
    def __init__(self, line, keyword, rest):
        self.line = line        # line number of its first line
        self.keyword = keyword  # upper case
        self.rest = rest        # everything after the keyword

    def fail(self, message):
        raise BuildError(f"Dockerfile:{self.line}: {self.keyword}: {message}")


def parse_dockerfile(text):
    """Instructions with continuation lines joined and comments dropped,
    as Docker's parser does (escape character `\\`)."""
    instructions = []
    pending, start = None, 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if pending is None and re.match(r"#\s*escape\s*=", stripped) and \
                not instructions:
            if not re.match(r"#\s*escape\s*=\s*\\$", stripped):
                raise BuildError(f"Dockerfile:{number}: only the escape "
                                 "character \\ is supported")
            continue
        if stripped.startswith("#"):
            continue  # comments, also between continuation lines
        if pending is None:
            if not stripped:
                continue
            pending, start = "", number
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1]
            continue
        pending += raw
        match = re.match(r"\s*([A-Za-z]+)(\s+(.*))?$", pending, re.S)
        if not match:
            raise BuildError(f"Dockerfile:{start}: cannot parse {pending!r}")
        instructions.append(Instruction(start, match.group(1).upper(),
                                        (match.group(3) or "").strip()))
        pending = None
    if pending is not None:
        raise BuildError(f"Dockerfile:{start}: the last instruction ends in a "
                         "line continuation")
    return instructions


def substitute(text, variables, where):
    """Docker's variable substitution: $NAME, ${NAME}, ${NAME:-word},
    ${NAME:+word}; `\\$` is a literal `$`."""
    out, i = [], 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text) and text[i + 1] == "$":
            out.append("$")
            i += 2
            continue
        if c != "$":
            out.append(c)
            i += 1
            continue
        if i + 1 < len(text) and text[i + 1] == "{":
            end = text.find("}", i)
            if end < 0:
                where.fail(f"unterminated ${{ in {text!r}")
            body = text[i + 2:end]
            match = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)(?::([-+])(.*))?",
                                 body, re.S)
            if not match:
                where.fail(f"unsupported substitution ${{{body}}}")
            name, op, word = match.groups()
            value = variables.get(name)
            if op == "-":
                out.append(value if value else word)
            elif op == "+":
                out.append(word if value else "")
            else:
                out.append(value or "")
            i = end + 1
            continue
        match = re.match(r"[A-Za-z_][A-Za-z0-9_]*", text[i + 1:])
        if match:
            out.append(variables.get(match.group(0)) or "")
            i += 1 + len(match.group(0))
        else:
            out.append("$")
            i += 1
    return "".join(out)


def json_array(text):
    """The exec (JSON) form, or None for the shell form."""
    if not text.startswith("["):
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return None  # Docker treats invalid JSON as the shell form
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return None
    return value


def split_flags(instruction, allowed):
    """Leading --name=value flags of an instruction; fails on any flag not in
    `allowed`."""
    words = instruction.rest.split()
    flags = {}
    while words and words[0].startswith("--"):
        name, _, value = words.pop(0)[2:].partition("=")
        if name not in allowed:
            instruction.fail(f"the flag --{name} is not supported")
        flags[name] = value
    return flags, words


def parse_assignments(instruction, text):
    """NAME=VALUE pairs (values may be quoted) or the old `NAME VALUE`."""
    words = shlex.split(text, posix=True)
    if words and "=" not in words[0]:
        if len(words) < 2:
            instruction.fail(f"expected NAME=VALUE in {text!r}")
        return [(words[0], " ".join(words[1:]))]
    pairs = []
    for word in words:
        name, eq, value = word.partition("=")
        if not eq or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            instruction.fail(f"expected NAME=VALUE, got {word!r}")
        pairs.append((name, value))
    return pairs


SUPPORTED = ("ARG", "FROM", "SHELL", "WORKDIR", "COPY", "RUN", "USER",
             "EXPOSE", "ENTRYPOINT", "CMD", "ENV", "LABEL")
FLAGS = {"COPY": ("from",)}  # every other instruction takes no --flags


def validate(instructions):
    """Fails, naming the line, on anything this interpreter cannot do as
    Docker would; checked for the whole file before any work starts."""
    if not instructions or instructions[0].keyword not in ("ARG", "FROM"):
        raise BuildError("Dockerfile: the first instruction must be ARG or "
                         "FROM")
    seen_from = False
    for instruction in instructions:
        if instruction.keyword not in SUPPORTED:
            instruction.fail("this instruction is not supported by "
                             "tests/docker/build_without_docker.py; teach it "
                             "or change the Dockerfile")
        if instruction.keyword not in ("ARG", "FROM") and not seen_from:
            instruction.fail("comes before the first FROM")
        seen_from = seen_from or instruction.keyword == "FROM"
        split_flags(instruction, FLAGS.get(instruction.keyword, ()))
        if instruction.keyword == "SHELL" and not json_array(instruction.rest):
            instruction.fail('SHELL needs the JSON form, e.g. ["/bin/bash", '
                             '"-c"]')
        if instruction.keyword == "COPY":
            words = [w for w in instruction.rest.split()
                     if not w.startswith("--")]
            if len(words) < 2:
                instruction.fail("expected COPY src... dest")
            for source in words[:-1]:
                if re.search(r"[*?\[]", source):
                    instruction.fail(f"wildcards in sources ({source!r}) are "
                                     "not supported by this interpreter")


# --- .dockerignore ----------------------------------------------------------

def pattern_regex(pattern):
    """Go's filepath.Match with Docker's `**` (any number of directories)."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**", i):
            i += 2
            if i < len(pattern) and pattern[i] == "/":
                out.append("(?:.*/)?")
                i += 1
            else:
                out.append(".*")
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                raise BuildError(f".dockerignore: bad pattern {pattern!r}")
            body = pattern[i + 1:end]
            if body.startswith("^") or body.startswith("!"):
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = end
        elif c == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out) + r"\Z")


class DockerIgnore:
    def __init__(self, context):
        self.rules = []  # (regex, excluded)
        path = os.path.join(context, ".dockerignore")
        if not os.path.exists(path):
            return
        with open(path) as f:
            for line in f:
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                excluded = not line.startswith("!")
                if not excluded:
                    line = line[1:].strip()
                line = os.path.normpath(line.lstrip("/"))
                if line == ".":
                    continue
                self.rules.append((pattern_regex(line), excluded))

    def excluded(self, relative):
        """Whether a context path (relative, '/'-separated) is left out: the
        last rule matching it or one of its parents decides."""
        parts = relative.split("/")
        prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
        result = False
        for regex, excluded in self.rules:
            if any(regex.match(p) for p in prefixes):
                result = excluded
        return result


# --- Root filesystems -------------------------------------------------------

def apt_sources():
    """(mirror for debootstrap, deb822 text of the bookworm sources) from this
    machine's apt configuration."""
    stanzas = []
    for name in sorted(os.listdir("/etc/apt/sources.list.d")):
        if name.endswith(".sources"):
            with open(os.path.join("/etc/apt/sources.list.d", name)) as f:
                stanzas += [s for s in f.read().split("\n\n") if s.strip()]
    one_line = []
    if os.path.exists("/etc/apt/sources.list"):
        with open("/etc/apt/sources.list") as f:
            for line in f:
                words = line.split("#")[0].split()
                if len(words) >= 4 and words[0] == "deb":
                    if words[1].startswith("["):  # options
                        words = [words[0]] + words[2:]
                    one_line.append(words)
    entries = []  # (uri, suites)
    for stanza in stanzas:
        fields = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line:
                continue
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.strip()
        if "deb" not in fields.get("types", "").split():
            continue
        suites = fields.get("suites", "").split()
        for uri in fields.get("uris", "").split():
            entries.append((uri, suites, fields.get("components", "main")))
    for words in one_line:
        entries.append((words[1], [words[2]], " ".join(words[3:])))
    bookworm = [(u, s, c) for u, s, c in entries
                if any(x.startswith("bookworm") for x in s)]
    mirror = next((u for u, s, _ in bookworm if "bookworm" in s), None)
    if mirror is None:
        raise BuildError("no apt source for Debian bookworm in "
                         "/etc/apt/sources.list or /etc/apt/sources.list.d: "
                         "debootstrap needs a mirror")
    text = ""
    for uri, suites, components in bookworm:
        text += (f"Types: deb\nURIs: {uri}\nSuites: {' '.join(suites)}\n"
                 f"Components: {components}\n"
                 "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n")
    return mirror, text


def debian_base(cache):
    """The Debian 12 root filesystem, bootstrapped once into `cache`."""
    base = os.path.join(cache, "debian-12-minbase")
    if os.path.isdir(base):
        return base
    if shutil.which("debootstrap") is None:
        log("installing debootstrap (apt-get)")
        run(["apt-get", "install", "-y", "--no-install-recommends",
             "debootstrap"])
    mirror, sources = apt_sources()
    partial = base + ".partial"
    started = time.monotonic()
    # debootstrap removes its /debootstrap folder when it succeeds: a
    # finished bootstrap whose clean-up below was cut is reused.
    if os.path.exists(os.path.join(partial, "etc/debian_version")) and \
            not os.path.exists(os.path.join(partial, "debootstrap")):
        log(f"reusing the finished debootstrap in {partial}")
    else:
        shutil.rmtree(partial, ignore_errors=True)
        os.makedirs(cache, exist_ok=True)
        log(f"debootstrap --variant=minbase bookworm from {mirror} (once)")
        result = subprocess.run(["debootstrap", "--variant=minbase",
                                 "bookworm", partial, mirror])
        if result.returncode != 0:
            raise BuildError(f"debootstrap failed ({result.returncode}); see "
                             f"{partial}/debootstrap/debootstrap.log")
    # Like Docker's debian:12: deb822 sources (with updates and security when
    # this machine has them), empty apt lists and caches.
    for path in ("etc/apt/sources.list",):
        if os.path.exists(os.path.join(partial, path)):
            os.remove(os.path.join(partial, path))
    with open(os.path.join(partial, "etc/apt/sources.list.d/debian.sources"),
              "w") as f:
        f.write(sources)
    run(["chroot", partial, "apt-get", "clean"])
    lists = os.path.join(partial, "var/lib/apt/lists")
    for name in os.listdir(lists):
        if name not in ("partial", "lock"):
            path = os.path.join(lists, name)
            if os.path.isfile(path):
                os.remove(path)
    os.rename(partial, base)
    log(f"Debian 12 base ready in {time.monotonic() - started:.0f} s")
    return base


def inside(root, path):
    """`path` (absolute, in the image) as a host path under `root`, without
    following links out of it."""
    normal = os.path.normpath("/" + path)
    return os.path.join(root, normal.lstrip("/"))


def lookup_user(root, spec, where):
    """'uid:gid' for USER `spec` (name or number, optional :group), from the
    image's /etc/passwd and /etc/group as Docker resolves it."""
    user, _, group = spec.partition(":")
    passwd = {}
    with open(inside(root, "/etc/passwd")) as f:
        for line in f:
            fields = line.rstrip("\n").split(":")
            if len(fields) >= 4:
                passwd[fields[0]] = (fields[2], fields[3])
    groups = {}
    with open(inside(root, "/etc/group")) as f:
        for line in f:
            fields = line.rstrip("\n").split(":")
            if len(fields) >= 3:
                groups[fields[0]] = fields[2]
    if user.isdigit():
        uid = user
        gid = next((g for u, g in passwd.values() if u == uid), "0")
    elif user in passwd:
        uid, gid = passwd[user]
    else:
        where.fail(f"no user {user!r} in the image's /etc/passwd")
    if group:
        if group.isdigit():
            gid = group
        elif group in groups:
            gid = groups[group]
        else:
            where.fail(f"no group {group!r} in the image's /etc/group")
    return uid, gid


def home_of(root, uid):
    """The home directory of `uid` in the image's /etc/passwd, "/" without
    one (what Docker sets HOME to)."""
    with open(inside(root, "/etc/passwd")) as f:
        for line in f:
            fields = line.rstrip("\n").split(":")
            if len(fields) >= 6 and fields[2] == uid:
                return fields[5] or "/"
    return "/"


def chroot_command(root, uid, gid, workdir, env, argv):
    """The chroot that runs `argv` as uid:gid in `workdir` with exactly `env`
    (env -i), with /proc mounted and /dev bound in a private mount namespace
    (gone when the command ends)."""
    resolv = inside(root, "/etc/resolv.conf")
    setup = [
        "set -e",
        f"mount -t proc proc {shlex.quote(inside(root, '/proc'))}",
        f"mount --rbind /dev {shlex.quote(inside(root, '/dev'))}",
    ]
    if os.path.exists("/etc/resolv.conf") and os.path.isfile(resolv) and \
            not os.path.islink(resolv):
        # Docker's build containers see the host's DNS setup, without it
        # becoming part of the image.
        setup.append(f"mount --bind /etc/resolv.conf {shlex.quote(resolv)}")
    command = ["chroot", f"--userspec={uid}:{gid}", f"--groups={gid}", root,
               "/usr/bin/env", f"--chdir={workdir}", "-i"]
    command += [f"{k}={v}" for k, v in env.items()] + list(argv)
    setup.append("exec " + shlex.join(command))
    return ["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c",
            "\n".join(setup)]


def copy_tree_entry(source, destination):
    """Copies a file, link or directory tree, owned by root, modes kept."""
    if os.path.islink(source):
        if os.path.lexists(destination):
            os.remove(destination)
        os.symlink(os.readlink(source), destination)
        os.lchown(destination, 0, 0)
    elif os.path.isdir(source):
        os.makedirs(destination, exist_ok=True)
        shutil.copystat(source, destination)
        os.chown(destination, 0, 0)
    else:
        if os.path.isdir(destination) and not os.path.islink(destination):
            raise BuildError(f"cannot copy file {source} over directory "
                             f"{destination}")
        shutil.copy2(source, destination, follow_symlinks=False)
        os.chown(destination, 0, 0)


# --- The build --------------------------------------------------------------

class Stage:
    def __init__(self, index, name, root):
        self.index = index
        self.name = name
        self.root = root
        self.shell = ["/bin/sh", "-c"]
        self.workdir = "/"
        self.user = "root"
        self.args = {}     # ARGs in scope
        self.env = {}      # ENVs
        self.expose = []
        self.entrypoint = None
        self.cmd = None
        self.labels = {}

    def variables(self):
        merged = dict(self.args)
        merged.update(self.env)
        return merged


class Builder:
    def __init__(self, options):
        self.options = options
        self.context = os.path.abspath(options.context)
        self.ignore = DockerIgnore(self.context)
        self.stages = []
        self.global_args = {}
        self.build_args = dict(options.build_arg)
        self.work = options.work
        # --run-only: the stages of a previous --keep build are reused; the
        # instructions only restore their metadata (USER, CMD, ...).
        self.reuse = options.run_only

    def stage_by_name(self, name, where):
        for stage in self.stages:
            if stage.name == name or str(stage.index) == name:
                return stage
        where.fail(f"no earlier stage named {name!r}")

    def build(self, instructions):
        handlers = {
            "ARG": self.do_arg, "FROM": self.do_from, "SHELL": self.do_shell,
            "WORKDIR": self.do_workdir, "COPY": self.do_copy,
            "RUN": self.do_run, "USER": self.do_user,
            "EXPOSE": self.do_expose, "ENTRYPOINT": self.do_entrypoint,
            "CMD": self.do_cmd, "ENV": self.do_env, "LABEL": self.do_label,
        }
        for instruction in instructions:
            handler = handlers.get(instruction.keyword)
            if handler is None:
                instruction.fail("this instruction is not supported by "
                                 "tests/docker/build_without_docker.py; "
                                 "teach it or change the Dockerfile")
            if instruction.keyword not in ("ARG", "FROM") and not self.stages:
                instruction.fail("comes before the first FROM")
            started = time.monotonic()
            shown = instruction.rest if len(instruction.rest) < 100 else \
                instruction.rest[:97] + "..."
            log(f"line {instruction.line}: {instruction.keyword} {shown}")
            handler(instruction)
            elapsed = time.monotonic() - started
            if elapsed >= 1:
                log(f"line {instruction.line}: done in {elapsed:.0f} s")
        if not self.stages:
            raise BuildError("the Dockerfile has no FROM")
        return self.stages[-1]

    def do_arg(self, instruction):
        for word in shlex.split(instruction.rest):
            name, eq, default = word.partition("=")
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                instruction.fail(f"bad ARG name {name!r}")
            if not self.stages:
                value = self.build_args.get(name, default if eq else None)
                self.global_args[name] = value
            else:
                stage = self.stages[-1]
                if name in self.build_args:
                    value = self.build_args[name]
                elif eq:
                    value = substitute(default, stage.variables(), instruction)
                else:
                    value = self.global_args.get(name)
                stage.args[name] = value

    def do_from(self, instruction):
        flags, words = split_flags(instruction, ())
        if len(words) == 3 and words[1].upper() == "AS":
            image, name = words[0], words[2].lower()
        elif len(words) == 1:
            image, name = words[0], None
        else:
            instruction.fail("expected FROM image [AS name]")
        image = substitute(image, {k: v for k, v in self.global_args.items()
                                   if v is not None}, instruction)
        index = len(self.stages)
        root = os.path.join(self.work, "stages",
                            f"{index}-{name or 'unnamed'}")
        parent = None
        if any(s.name == image.lower() for s in self.stages):
            parent = self.stage_by_name(image.lower(), instruction)
            source = parent.root
        elif image in DEBIAN_12_IMAGES:
            source = None
        else:
            instruction.fail(f"image {image!r}: only Debian 12 (debian:12, "
                             "debian:bookworm) or an earlier stage can be a "
                             "base here")
        if self.reuse:
            if not os.path.isdir(root):
                instruction.fail(f"--run-only: no {root} from a --keep build")
        else:
            shutil.rmtree(root, ignore_errors=True)
            os.makedirs(os.path.dirname(root), exist_ok=True)
            if source is None:
                source = debian_base(self.options.cache)
            run(["cp", "-a", "--reflink=auto", source, root])
        stage = Stage(index, name, root)
        if parent is not None:
            stage.shell = list(parent.shell)
            stage.workdir = parent.workdir
            stage.user = parent.user
            stage.env = dict(parent.env)
            stage.entrypoint, stage.cmd = parent.entrypoint, parent.cmd
            stage.expose = list(parent.expose)
        self.stages.append(stage)

    def do_shell(self, instruction):
        shell = json_array(instruction.rest)
        if not shell:
            instruction.fail("SHELL needs the JSON form, e.g. "
                             '["/bin/bash", "-c"]')
        self.stages[-1].shell = shell

    def do_workdir(self, instruction):
        stage = self.stages[-1]
        path = substitute(instruction.rest, stage.variables(), instruction)
        path = os.path.normpath(os.path.join(stage.workdir, path))
        if not self.reuse:
            os.makedirs(inside(stage.root, path), exist_ok=True)
        stage.workdir = path

    def context_path(self, source, instruction):
        relative = os.path.normpath(source.lstrip("/"))
        if relative == ".." or relative.startswith("../"):
            instruction.fail(f"{source!r} is outside the build context")
        return relative

    def do_copy(self, instruction):
        stage = self.stages[-1]
        flags, _ = split_flags(instruction, ("from",))
        rest = instruction.rest
        while rest.startswith("--"):
            rest = rest.split(None, 1)[1] if " " in rest else ""
        words = json_array(rest) or shlex.split(rest)
        words = [substitute(w, stage.variables(), instruction) for w in words]
        if len(words) < 2:
            instruction.fail("expected COPY src... dest")
        sources, dest = words[:-1], words[-1]
        for source in sources:
            if re.search(r"[*?\[]", source):
                instruction.fail(f"wildcards in sources ({source!r}) are not "
                                 "supported by this interpreter")
        if self.reuse:
            return
        dest_is_dir = dest.endswith("/") or len(sources) > 1
        dest = os.path.normpath(os.path.join(stage.workdir, dest))
        if "from" in flags:
            origin = self.stage_by_name(flags["from"].lower(), instruction)
            pairs = [(inside(origin.root, s), None) for s in sources]
        else:
            pairs = []
            for s in sources:
                relative = self.context_path(s, instruction)
                if relative != "." and self.ignore.excluded(relative):
                    instruction.fail(f"{s!r} is excluded by .dockerignore")
                pairs.append((os.path.join(self.context, relative), relative))
        for host_source, relative in pairs:
            if not os.path.lexists(host_source):
                instruction.fail(f"{host_source} does not exist")
            if os.path.isdir(host_source) and not os.path.islink(host_source):
                self.copy_directory(host_source, relative,
                                    inside(stage.root, dest))
            else:
                target = inside(stage.root, dest)
                if dest_is_dir or (os.path.isdir(target) and
                                   not os.path.islink(target)):
                    target = os.path.join(target, os.path.basename(host_source))
                os.makedirs(os.path.dirname(target), exist_ok=True)
                copy_tree_entry(host_source, target)

    def copy_directory(self, source, relative, target):
        """The directory's contents (not the directory itself) into
        `target`; context paths are filtered by .dockerignore."""
        os.makedirs(target, exist_ok=True)

        def excluded(path):
            if relative is None:  # from a stage: nothing is ignored
                return False
            in_context = path if relative == "." else os.path.normpath(
                os.path.join(relative, path))
            return self.ignore.excluded(in_context)

        for directory, subdirs, files in os.walk(source):
            below = os.path.relpath(directory, source)
            keep = []
            for name in sorted(subdirs):
                path = os.path.normpath(os.path.join(below, name))
                if excluded(path):
                    continue
                full = os.path.join(directory, name)
                copy_tree_entry(full, os.path.join(target, path))
                if not os.path.islink(full):
                    keep.append(name)
            subdirs[:] = keep
            for name in sorted(files):
                path = os.path.normpath(os.path.join(below, name))
                if excluded(path):
                    continue
                copy_tree_entry(os.path.join(directory, name),
                                os.path.join(target, path))

    def run_env(self, stage):
        env = {"PATH": DOCKER_PATH, "HOME": "/root", "HOSTNAME": "buildkitsandbox"}
        for name, value in stage.args.items():
            if value is not None:
                env[name] = value
        env.update(stage.env)
        return env

    def do_run(self, instruction):
        stage = self.stages[-1]
        if instruction.rest.startswith("--"):
            instruction.fail("RUN flags (--mount, --network, ...) are not "
                             "supported")
        if self.reuse:
            return
        argv = json_array(instruction.rest)
        if argv is None:
            argv = stage.shell + [instruction.rest]
        uid, gid = lookup_user(stage.root, stage.user, instruction)
        env = self.run_env(stage)
        if "HOME" not in stage.env:
            env["HOME"] = home_of(stage.root, uid)
        command = chroot_command(stage.root, uid, gid, stage.workdir, env,
                                 argv)
        # Nice: the machine is shared; the Dockerfile's -j"$(nproc)" stays.
        result = subprocess.run(["nice", "-n", "10", *command])
        if result.returncode != 0:
            instruction.fail(f"the command exited with {result.returncode}")

    def do_user(self, instruction):
        stage = self.stages[-1]
        stage.user = substitute(instruction.rest, stage.variables(),
                                instruction)
        lookup_user(stage.root, stage.user, instruction)  # must resolve

    def do_expose(self, instruction):
        stage = self.stages[-1]
        for word in substitute(instruction.rest, stage.variables(),
                               instruction).split():
            port, _, protocol = word.partition("/")
            if not port.isdigit() or protocol not in ("", "tcp", "udp"):
                instruction.fail(f"bad port {word!r}")
            stage.expose.append(int(port))

    def command_form(self, instruction):
        argv = json_array(instruction.rest)
        if argv is None:
            return self.stages[-1].shell + [instruction.rest], True
        return argv, False

    def do_entrypoint(self, instruction):
        stage = self.stages[-1]
        stage.entrypoint, stage.entrypoint_shell = self.command_form(
            instruction)
        stage.cmd = None  # Docker: a new ENTRYPOINT resets CMD

    def do_cmd(self, instruction):
        stage = self.stages[-1]
        stage.cmd, _ = self.command_form(instruction)

    def do_env(self, instruction):
        stage = self.stages[-1]
        for name, value in parse_assignments(instruction, instruction.rest):
            stage.env[name] = substitute(value, stage.variables(), instruction)

    def do_label(self, instruction):
        stage = self.stages[-1]
        for name, value in parse_assignments(instruction, instruction.rest):
            stage.labels[name] = value


# --- Running the image ------------------------------------------------------

HEALTH_PROBE = r"""
import sys, urllib.request, urllib.error
grpc_port, http_port = int(sys.argv[1]), int(sys.argv[2])
import grpc
channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
check = channel.unary_unary("/grpc.health.v1.Health/Check")
try:
    answer = check(b"", timeout=2)  # HealthCheckRequest{service: ""}
except grpc.RpcError as e:
    print(f"grpc health: {e.code().name}"); sys.exit(1)
if answer != b"\x08\x01":
    print(f"grpc health: not SERVING ({answer!r})"); sys.exit(1)
for path in ("/healthz", "/readyz"):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}{path}",
                                    timeout=2) as r:
            body = r.read().decode()
            print(f"GET {path}: {r.status} {body.strip()}")
    except urllib.error.HTTPError as e:
        print(f"GET {path}: {e.code} {e.read().decode().strip()}"); sys.exit(1)
    except OSError as e:
        print(f"GET {path}: {e}"); sys.exit(1)
print("grpc health: SERVING")
"""


def run_image(stage, options):
    if stage.entrypoint is None and stage.cmd is None:
        raise BuildError("the final stage has no ENTRYPOINT or CMD to run")
    argv = list(stage.entrypoint or [])
    if stage.cmd and not getattr(stage, "entrypoint_shell", False):
        argv += stage.cmd
    if len(stage.expose) < 2:
        raise BuildError("expected two EXPOSEd ports (gRPC, then HTTP) to "
                         f"probe, got {stage.expose}")
    grpc_port, http_port = stage.expose[0], stage.expose[1]
    uid, gid = lookup_user(stage.root, stage.user,
                           Instruction(0, "USER", stage.user))
    view = os.path.join(options.work, "run", "root")
    volume = os.path.join(options.work, "run", "volume")
    shutil.rmtree(os.path.join(options.work, "run"), ignore_errors=True)
    os.makedirs(view)
    os.makedirs(volume)
    os.chown(volume, int(uid), int(gid))
    os.chmod(volume, 0o750)
    env = {"PATH": DOCKER_PATH, "HOME": home_of(stage.root, uid),
           "HOSTNAME": "bursar-0"}
    env.update(stage.env)
    command = ["chroot", f"--userspec={uid}:{gid}", f"--groups={gid}", view,
               "/usr/bin/env", f"--chdir={stage.workdir}", "-i"]
    command += [f"{k}={v}" for k, v in env.items()] + argv
    q = shlex.quote
    setup = [
        "set -e",
        "ip link set lo up",
        # A read-only view of the image, as readOnlyRootFilesystem.
        f"mount --bind {q(stage.root)} {q(view)}",
        f"mount -o remount,bind,ro {q(view)}",
        f"mount -t proc proc {q(inside(view, '/proc'))}",
        f"mount --rbind /dev {q(inside(view, '/dev'))}",
        # The chart's emptyDir at /tmp and data volume at the WORKDIR.
        f"mount -t tmpfs -o size=64m,mode=1777 tmpfs {q(inside(view, '/tmp'))}",
        f"mount --bind {q(volume)} {q(inside(view, stage.workdir))}",
        "exec " + shlex.join(command),
    ]
    log(f"running {shlex.join(argv)} as {stage.user} ({uid}:{gid}) in "
        f"{stage.workdir}, read-only root, private network")
    log_path = os.path.join(options.work, "run", "bursard.log")
    with open(log_path, "w") as out:
        process = subprocess.Popen(
            ["unshare", "--mount", "--net", "--propagation", "private",
             "/bin/sh", "-c", "\n".join(setup)],
            stdout=out, stderr=subprocess.STDOUT)
    probe = [sys.executable, "-c", HEALTH_PROBE, str(grpc_port),
             str(http_port)]
    started = time.monotonic()
    answered = "(no probe ran)"
    result = None
    try:
        own_network = os.readlink("/proc/self/ns/net")
        while time.monotonic() - started < options.run_timeout:
            if process.poll() is not None:
                break
            # Until unshare has run, the child is still in this machine's
            # network namespace, where 8081 may be somebody else's.
            try:
                if os.readlink(f"/proc/{process.pid}/ns/net") == own_network:
                    time.sleep(0.1)
                    continue
            except OSError:
                continue  # exited meanwhile: poll() says so next
            result = subprocess.run(
                ["nsenter", f"--target={process.pid}", "--net", *probe],
                capture_output=True, text=True)
            answered = result.stdout + result.stderr
            if result.returncode == 0:
                break
            time.sleep(0.5)
        if process.poll() is not None:
            with open(log_path) as f:
                raise BuildError(f"the image's command exited with "
                                 f"{process.returncode} before it served:\n"
                                 f"{f.read()}")
        if result is None or result.returncode != 0:
            raise BuildError(f"no healthy answer within {options.run_timeout}"
                             f" s; last probe:\n{answered}")
        log(f"healthy after {time.monotonic() - started:.1f} s:\n"
            + answered.strip())
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            raise BuildError("no exit within 60 s of SIGTERM")
        if code != 0:
            with open(log_path) as f:
                raise BuildError(f"exit code {code} after SIGTERM:\n{f.read()}")
        log("stopped cleanly on SIGTERM (exit code 0)")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    with open(log_path) as f:
        print(f.read(), end="", flush=True)


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    source = os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))
    cache = os.path.join(os.environ.get("XDG_CACHE_HOME") or
                         os.path.expanduser("~/.cache"), "bursar",
                         "docker-build")
    parser.add_argument("--context", default=source,
                        help="build context (default: the repository)")
    parser.add_argument("--dockerfile", default=None,
                        help="default: CONTEXT/Dockerfile")
    parser.add_argument("--build-arg", action="append", default=[],
                        type=lambda s: tuple(s.split("=", 1)) if "=" in s
                        else parser.error(f"--build-arg {s}: NAME=VALUE"),
                        help="NAME=VALUE, as docker build --build-arg")
    parser.add_argument("--cache", default=cache,
                        help="where the Debian 12 base is kept (default: "
                        f"{cache})")
    parser.add_argument("--work", default=None,
                        help="stage root filesystems (default: CACHE/work, "
                        "emptied first)")
    parser.add_argument("--no-run", action="store_true",
                        help="build only; do not run the final stage")
    parser.add_argument("--keep", action="store_true",
                        help="keep the stage root filesystems afterwards")
    parser.add_argument("--run-only", action="store_true",
                        help="only run the final stage of a previous --keep "
                        "build (same --work)")
    parser.add_argument("--run-timeout", type=float, default=120,
                        help="seconds the image gets to answer healthy")
    options = parser.parse_args()
    if os.geteuid() != 0:
        print("build_without_docker: needs root (debootstrap, chroot, "
              "mounts)", file=sys.stderr)
        return 1
    for tool in ("chroot", "unshare", "nsenter", "ip", "mount", "cp"):
        if shutil.which(tool) is None:
            print(f"build_without_docker: {tool} is missing", file=sys.stderr)
            return 1
    options.work = os.path.abspath(options.work or
                                   os.path.join(options.cache, "work"))
    dockerfile = options.dockerfile or os.path.join(options.context,
                                                    "Dockerfile")
    started = time.monotonic()
    try:
        with open(dockerfile) as f:
            instructions = parse_dockerfile(f.read())
        validate(instructions)
        if not options.run_only:
            shutil.rmtree(options.work, ignore_errors=True)
            os.makedirs(options.work)
        builder = Builder(options)
        final = builder.build(instructions)
        log(f"{'reused' if options.run_only else 'built'} {dockerfile} in {time.monotonic() - started:.0f} s; final "
            f"stage in {final.root}")
        if not options.no_run:
            run_image(final, options)
    except BuildError as e:
        print(f"build_without_docker: FAILED: {e}", file=sys.stderr,
              flush=True)
        return 1
    finally:
        if not options.keep and not options.run_only:
            shutil.rmtree(options.work, ignore_errors=True)
    log(f"all done in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
