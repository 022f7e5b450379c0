"""The house rules of ARCHITECTURE.md, checked on the source: lower rooms never import higher
ones, the reference model imports only its config, modules stay under 400 lines and functions
under 60 (unless a ``# long:`` comment above the ``def`` says why)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "segany"

# Rank of each room, low to high: a module may import its own room, lower rooms, and nothing
# higher. Rooms of the same rank may use each other.
RANKS = {
    "config": 0,
    "modeling": 1,
    "formats": 1,
    "fast": 2,
    "inference": 3,
    "checkpoints": 3,
    "data": 3,
    "automatic": 4,
    "export": 4,
    "train": 4,
    "evaluate": 4,
    "engine": 4,  # the data engine: project store, gears, retrain loop, statistics
    "text": 4,  # text prompts: zero-shot detector boxes, and the bundled text-prompt head
    "video": 4,  # video: frames in and out, the tracker, propagation
    # the official module paths (drop-in shims) and the seeded weights of tests and benchmarks
    "compat": 5,
    "utils": 5,
    "predictor": 5,
    "build_sam": 5,
    "automatic_mask_generator": 5,
    "testing": 5,
    "distributed": 5,  # scale-out on Ray: over engine, automatic, inference
    "server": 6,
    "cli": 6,
}
UNRANKED = {"__init__", "__main__"}  # the package's front door imports what it exports
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "static" not in p.parts)


def room_of(path: Path) -> str:
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def imported_rooms(path: Path) -> set[str]:
    """The rooms of ``segany`` that ``path`` imports, absolute or relative."""
    package = path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1]
    rooms = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(package[: len(package) - node.level + 1])
                target = [*base, *(node.module.split(".") if node.module else [])]
            else:
                target = (node.module or "").split(".")
            if target[0] != "segany":
                continue
            if len(target) > 1:
                rooms.add(target[1])
            else:  # `from segany import x` / `from .. import x`: x names a room or a name
                rooms.update(alias.name for alias in node.names if alias.name in RANKS)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "segany" and len(parts) > 1:
                    rooms.add(parts[1])
    return rooms


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_lower_rooms_never_import_higher_ones(path):
    room = room_of(path)
    if room in UNRANKED:
        return
    assert room in RANKS, f"new room {room!r}: give it a rank here and a place in ARCHITECTURE.md"
    higher = {r for r in imported_rooms(path) - {room} if RANKS.get(r, 99) > RANKS[room]}
    assert not higher, f"{room} (rank {RANKS[room]}) imports higher rooms {sorted(higher)}"


def test_the_reference_model_imports_only_its_config():
    for path in (PACKAGE / "modeling").glob("*.py"):
        assert imported_rooms(path) <= {"modeling", "config"}, path.name


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_small_modules_and_functions(path):
    lines = path.read_text().splitlines()
    assert len(lines) <= MAX_MODULE_LINES, f"{len(lines)} lines"
    for node in ast.walk(ast.parse("\n".join(lines))):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
        length = node.end_lineno - node.lineno + 1
        reason = lines[first - 2].strip() if first >= 2 else ""
        assert length <= MAX_FUNCTION_LINES or reason.startswith("# long:"), (
            f"{node.name} (line {node.lineno}) has {length} lines and no '# long:' reason"
        )


def test_the_checks_see_violations(tmp_path):
    """The import walk resolves relative imports (a test of the test)."""
    fake = PACKAGE / "modeling" / "sam.py"
    assert "config" in imported_rooms(fake)
    assert imported_rooms(PACKAGE / "cli" / "__init__.py") >= {"checkpoints"}
