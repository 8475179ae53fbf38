"""Write a pip constraints file that pins every direct runtime dependency to its declared floor.

    python .ci/lowest-deps.py [--extra NAME]... [-o FILE]

Reads [project] dependencies (and the optional-dependencies of each --extra) from pyproject.toml
and turns each "name>=X" into "name==X", keeping its environment marker, so that the floors are
written once, in pyproject.toml, and CI installs exactly them:

    pip install -c constraints.txt '.[test]'

A dependency with no ">=" floor is left to the resolver and named on stderr; one with more
than one ">=" or a floor its other specifiers exclude is an error. Needs only the standard
library on Python 3.11+ (tomllib), and tomli on 3.10.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent

# PEP 508, as far as a dependency list needs it: name, [extras], specifiers, ; marker
REQUIREMENT = re.compile(
    r"""^\s*(?P<name>[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*
        (?:\[(?P<extras>[^\]]*)\])?\s*
        (?P<specifiers>[^;]*?)\s*
        (?:;\s*(?P<marker>.+?))?\s*$""",
    re.VERBOSE,
)
SPECIFIER = re.compile(r"^\s*(?P<op>~=|===|==|!=|<=|>=|<|>)\s*(?P<version>[A-Za-z0-9.*+!_-]+)\s*$")


def _release(version: str) -> tuple[int, ...]:
    """The numeric release part of a version (3.10.0rc1 -> (3, 10, 0)), for the sanity check."""
    match = re.match(r"^(?:\d+!)?(\d+(?:\.\d+)*)", version)
    if not match:
        raise ValueError(f"cannot read version {version!r}")
    parts = [int(p) for p in match.group(1).split(".")]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def pin(requirement: str) -> tuple[str, str | None]:
    """("name==floor; marker", None) for a requirement with a floor, ("", name) for one without."""
    match = REQUIREMENT.match(requirement)
    if not match or "@" in requirement:
        raise ValueError(f"cannot read the requirement {requirement!r}")
    name = match.group("name")
    specifiers = [s for s in match.group("specifiers").strip("() ").split(",") if s.strip()]
    parsed = []
    for text in specifiers:
        spec = SPECIFIER.match(text)
        if not spec:
            raise ValueError(f"{requirement!r}: cannot read the specifier {text!r}")
        parsed.append((spec.group("op"), spec.group("version")))
    floors = [version for op, version in parsed if op == ">="]
    if len(floors) > 1:
        raise ValueError(f"{requirement!r}: more than one '>=' floor")
    if not floors:
        return "", name
    floor = floors[0]
    for op, version in parsed:  # the floor must itself be allowed (">=3.10,<3.5" is a typo)
        bound, mine = _release(version), _release(floor)
        if (op == "<" and not mine < bound) or (op == "<=" and not mine <= bound) or (op == "!=" and mine == bound):
            raise ValueError(f"{requirement!r}: the floor {floor} is excluded by {op}{version}")
    marker = match.group("marker")
    # constraints may not name extras (pip refuses them): the extra's own requirements are
    # pinned, when they are direct dependencies, through their own lines
    return f"{name}=={floor}" + (f"; {marker}" if marker else ""), None


def _key(line: str) -> tuple[str, str]:
    """A constraint line's normalized name and marker: one floor each."""
    name, _, rest = line.partition("==")
    return re.sub(r"[-_.]+", "-", name).lower(), rest.partition(";")[2].strip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--extra", action="append", default=[], help="also pin this optional-dependencies group")
    parser.add_argument("-o", "--output", help="write here instead of stdout")
    parser.add_argument("--pyproject", default=str(ROOT / "pyproject.toml"))
    args = parser.parse_args()

    project = tomllib.loads(Path(args.pyproject).read_text(encoding="utf-8"))["project"]
    requirements = list(project.get("dependencies", []))
    for extra in args.extra:
        try:
            requirements += project["optional-dependencies"][extra]
        except KeyError:
            parser.error(f"pyproject.toml has no optional-dependencies group {extra!r}")

    lines: list[str] = []
    unpinned: list[str] = []
    try:
        for requirement in requirements:
            line, name = pin(requirement)
            if name and name not in unpinned:
                unpinned.append(name)
            if not line or line in lines:
                continue
            same = [other for other in lines if _key(other) == _key(line)]
            if same:  # e.g. psycopg>=3.1 in one extra and psycopg>=3.2 in another
                raise ValueError(f"two floors for one dependency: {same[0]!r} and {line!r}")
            lines.append(line)
    except ValueError as exc:
        print(f"lowest-deps: {exc}", file=sys.stderr)
        return 1
    if unpinned:
        print(f"lowest-deps: no floor declared, left to the resolver: {', '.join(unpinned)}", file=sys.stderr)

    text = "# written by .ci/lowest-deps.py from pyproject.toml: every floor, pinned\n" + "".join(f"{line}\n" for line in lines)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
