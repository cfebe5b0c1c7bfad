"""`evac report --html`: one self-contained page, loaded in headless Chromium with no console messages,
whose screenshot shows the charts (non-blank chart regions)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from executor.cli.main import main
from tests.browser import load

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "build" / "report-screenshots"  # stable paths, printed by the tests, kept after the run
GANTT_OUT = (87, 153, 199)  # plotly blue #1f77b4 at opacity 0.75 on white: "migrating out" bars
GANTT_IN = (255, 159, 74)  # plotly orange #ff7f0e at opacity 0.75 on white: "migrating in" bars


def _pixels_near(img: np.ndarray, rgb: tuple[int, int, int], tol: int = 12) -> int:
    return int((np.abs(img[:, :, :3].astype(int) - np.array(rgb)).max(axis=2) <= tol).sum())


def _busy_tiles(img: np.ndarray, tile: int = 100) -> int:
    """Tiles of the screenshot that are not one uniform colour."""
    h, w = img.shape[:2]
    return sum(1 for y in range(0, h - tile + 1, tile) for x in range(0, w - tile + 1, tile)
               if img[y:y + tile, x:x + tile, :3].std() > 1.0)


@pytest.fixture(scope="module")
def ran_plan(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A plan of data/small.json (its host in maintenance) and the journal of its simulated run."""
    d = tmp_path_factory.mktemp("report")
    plan, journal = d / "plan.json", d / "journal.db"
    assert main(["plan", str(ROOT / "data" / "small.json"), "--greedy", "-o", str(plan)]) == 0
    assert main(["run", str(plan), "--simulate", "--speedup", "100", "--journal", str(journal)]) == 0
    return plan, journal


def test_plan_report_with_journal_loads_in_chromium_with_no_console_message_and_shows_its_charts(
        ran_plan: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan, journal = ran_plan
    page = tmp_path / "report.html"
    assert main(["report", str(plan), "--journal", str(journal), "--html", str(page)]) == 0
    text = page.read_text()
    for section in ("Summary", "Planned against executed", "Gantt by host", "Gantt by wave",
                    "Bandwidth per NIC and link", "Host load before / after", "Blockers"):
        assert f"<h2>{section}</h2>" in text, section
    tags = re.findall(r"<(?:script|link|img|iframe)\b[^>]*>", text)
    assert tags and not [t for t in tags if re.search(r"\b(?:src|href)=", t)]  # nothing fetched at view time
    loaded = load(page, ARTIFACTS / "plan-report.png", tmp_path / "profile")
    print(f"screenshot: {loaded.screenshot}")
    assert loaded.console == []
    img = np.asarray(Image.open(loaded.screenshot).convert("RGB"))
    assert _pixels_near(img, GANTT_OUT) > 2000 and _pixels_near(img, GANTT_IN) > 2000  # the Gantt bars drawn
    assert _busy_tiles(img) > 40  # of 14 × 20 tiles: text and charts, not a blank page
    with capsys.disabled():
        print(f"\nHTML report screenshot: {loaded.screenshot}")


def test_whatif_report_shows_the_comparison_and_timelines(tmp_path: Path) -> None:
    result, page = tmp_path / "whatif.json", tmp_path / "whatif.html"
    small = ROOT / "data" / "small.json"
    assert main(["whatif", str(small), "--serial", "-s", "drain=r1-h02", "-s", "drain=r1-h02+migration-share=0.2",
                 "-s", "drain-label=rack=r2", "-o", str(result)]) in (0, 1)
    assert main(["report", str(result), "--html", str(page)]) == 0
    text = page.read_text()
    assert "<h2>Comparison</h2>" in text and "<h2>Timelines</h2>" in text and "drain=r1-h02+migration-share=0.2" in text
    loaded = load(page, ARTIFACTS / "whatif-report.png", tmp_path / "profile")
    assert loaded.console == []
    img = np.asarray(Image.open(loaded.screenshot).convert("RGB"))
    assert _busy_tiles(img[300:1300]) > 20  # the makespan bars and the timeline lines


def test_the_browser_check_sees_console_errors_and_blank_pages(tmp_path: Path) -> None:
    """The checks above can fail: an error, an uncaught exception and a blank page are all seen."""
    page = tmp_path / "bad.html"
    page.write_text("<!DOCTYPE html><html><body><script>console.error('boom'); undefinedFn();</script></body></html>")
    loaded = load(page, tmp_path / "bad.png", tmp_path / "profile", size=(400, 300))
    assert any("boom" in m for m in loaded.console) and any("undefinedFn" in m for m in loaded.console)
    assert _busy_tiles(np.asarray(Image.open(loaded.screenshot).convert("RGB"))) == 0


@pytest.mark.parametrize("setup, needle", [
    ("garbage", "invalid JSON"),
    ("whatif-bad", "scenarios[0].feasible"),
    ("other-journal", "records a run of another plan"),
    ("no-dir", "does not exist"),
])
def test_bad_input_exits_2_and_writes_nothing(setup: str, needle: str, ran_plan: tuple[Path, Path], tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    plan, journal = ran_plan
    page = tmp_path / "out.html"
    argv = ["report", str(plan), "--html", str(page)]
    if setup == "garbage":
        bad = tmp_path / "p.json"
        bad.write_text("{not json")
        argv[1] = str(bad)
    elif setup == "whatif-bad":
        bad = tmp_path / "w.json"
        bad.write_text(json.dumps({"format": "evac-whatif/1", "scenarios": [{"scenario": "x", "feasible": "yes",
                                                                             "makespan_s": 1, "blockers": []}]}))
        argv[1] = str(bad)
    elif setup == "other-journal":
        other = tmp_path / "other.json"
        assert main(["plan", str(ROOT / "data" / "small.json"), "--drain", "r1-h02", "--greedy", "-o", str(other)]) == 0
        argv[1:2] = [str(other), "--journal", str(journal)]
    else:
        argv[-1] = str(tmp_path / "missing" / "out.html")
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err
    assert not page.exists()


def test_a_plan_that_leaves_vms_behind_lists_them_as_blockers(tmp_path: Path) -> None:
    inv = tmp_path / "inv.json"
    inv.write_text(json.dumps(json.loads((Path(__file__).parent / "cases" / "pinned_on_drained_host.json")
                                         .read_text())["inventory"]))
    plan, page = tmp_path / "plan.json", tmp_path / "plan.html"
    assert main(["plan", str(inv), "--drain", "h1", "--greedy", "-o", str(plan)]) == 1
    assert main(["report", str(plan), "--html", str(page)]) == 0
    blockers = page.read_text().split("<h2>Blockers</h2>")[1]
    assert "license-server" in blockers and "pinned" in blockers
