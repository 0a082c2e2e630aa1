"""UExplorer's main window.

For now it shows where the library lives (data, cache, logs, database, config); the library
view and the Maintenance panel dock into it as those parts land (View → Panels).
"""

from __future__ import annotations

from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QFormLayout, QLabel, QMainWindow, QMenu, QWidget

from ucore.foundation.config.loader import LoadedConfig
from ucore.foundation.paths import redact_url


class MainWindow(QMainWindow):
    def __init__(self, config: LoadedConfig) -> None:
        super().__init__()
        self.config = config
        self.setWindowTitle("UExplorer")
        self.resize(1000, 700)
        self._build_menus()
        self._build_central()
        loc = config.locations
        self.statusBar().showMessage(f"Database: {redact_url(loc.database_url)}")

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        self.quit_action = QAction("&Quit", self)
        self.quit_action.setShortcut(QKeySequence("Ctrl+Q"))
        self.quit_action.triggered.connect(self.close)
        file_menu.addAction(self.quit_action)
        view_menu = bar.addMenu("&View")
        #: Later parts (the Maintenance panel) add their toggle actions here.
        self.panels_menu: QMenu = view_menu.addMenu("&Panels")

    def _build_central(self) -> None:
        loc = self.config.locations
        central = QWidget(self)
        form = QFormLayout(central)
        source = str(self.config.source) if self.config.source else "none (defaults)"
        self.location_labels: dict[str, QLabel] = {}
        for key, value in (
            ("Config file", source),
            ("Data", str(loc.data_dir)),
            ("Cache", str(loc.cache_dir)),
            ("Logs", str(loc.log_dir)),
            ("Database", redact_url(loc.database_url)),
        ):
            label = QLabel(value, central)
            label.setObjectName(f"location-{key.lower().replace(' ', '-')}")
            self.location_labels[key] = label
            form.addRow(f"{key}:", label)
        self.setCentralWidget(central)
