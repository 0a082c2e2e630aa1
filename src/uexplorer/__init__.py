"""UExplorer: the Qt app that shows a UCore library and its maintenance."""
