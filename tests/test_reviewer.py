"""The reviewer's entry page links every number to the notebook cell that computed it."""
from __future__ import annotations

import pytest

from clinops.reviewer import STAGE_SOURCES, TRIPOD_AI, broken_links, cell_anchor


@pytest.mark.parametrize("stage", sorted(STAGE_SOURCES))
def test_every_recording_stage_points_to_a_cell_of_its_notebook(project_root, stage):
    notebook, call = STAGE_SOURCES[stage]
    assert cell_anchor(project_root / "notebooks" / f"{notebook}.ipynb", call), f"{notebook}: no cell calls {call}"


def test_broken_local_links_are_found(tmp_path):
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "a.html").write_text("x")
    page = tmp_path / "index.html"
    page.write_text("<a href='notebooks/a.html#cell-id=1'>a</a><img src='fig.png'><a href='https://example.org/'>x</a>")
    assert broken_links(page) == ["fig.png"]


def test_the_tripod_ai_checklist_has_every_item_once():
    items = [i for i, _, _ in TRIPOD_AI]
    assert len(items) == len(set(items)) and items[0] == "1" and items[-1] == "27c"
    assert all(where for _, _, where in TRIPOD_AI), "each item says where it is answered, or why not"
