"""A minimal fake of PythonQt's ``ctk`` module (see qt.py in this folder)."""

from __future__ import annotations

import qt


class ctkCollapsibleButton(qt.QAbstractButton):
    SIGNALS = ("contentsCollapsed",)

    def __init__(self, parent=None):
        super().__init__("", parent)
        self._collapsed = False

    @property
    def collapsed(self):
        return self._collapsed

    @collapsed.setter
    def collapsed(self, value):
        value = bool(value)
        if value != self._collapsed:
            self._collapsed = value
            self.contentsCollapsed.emit(value)


class ctkPathLineEdit(qt.QWidget):
    SIGNALS = ("currentPathChanged",)
    Files = 1
    Dirs = 2

    def __init__(self, parent=None):
        super().__init__(parent)
        self._currentPath = ""
        self.filters = 0
        self.nameFilters = []

    @property
    def currentPath(self):
        return self._currentPath

    @currentPath.setter
    def currentPath(self, value):
        value = str(value)
        if value != self._currentPath:
            self._currentPath = value
            self.currentPathChanged.emit(value)


class ctkSliderWidget(qt.QSpinBox):
    pass


for _cls in (ctkCollapsibleButton, ctkPathLineEdit, ctkSliderWidget):
    qt.widgetClasses[_cls.__name__] = _cls
