"""UExplorer's main window, offscreen."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

pytest.importorskip("PySide6")

from ucore.foundation.config import parse_config


@pytest.fixture
def window(qtbot, tmp_path):  # type: ignore[no-untyped-def]
    from uexplorer.window import MainWindow

    cfg = parse_config(
        {"database": {"url": "postgresql://me:hunter2@db.example/lib"}},
        data_dir=tmp_path,
        env={},
    )
    win = MainWindow(cfg)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    return win


def test_window_shows_locations_without_password(window, tmp_path):  # type: ignore[no-untyped-def]
    labels = {k: v.text() for k, v in window.location_labels.items()}
    assert labels["Data"] == str(tmp_path.resolve())
    assert labels["Cache"] == str(tmp_path.resolve() / "cache")
    assert "hunter2" not in labels["Database"]
    assert "***" in labels["Database"]
    assert "hunter2" not in window.statusBar().currentMessage()


def test_view_menu_has_panels_submenu(window):  # type: ignore[no-untyped-def]
    titles = [a.text() for a in window.menuBar().actions()]
    assert titles == ["&File", "&View"]
    assert window.panels_menu.title() == "&Panels"


def test_quit_shortcut_closes_window(window, qtbot):  # type: ignore[no-untyped-def]
    from PySide6.QtCore import Qt

    window.activateWindow()
    qtbot.waitActive(window)
    qtbot.keyClick(window, Qt.Key.Key_Q, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=2000)
