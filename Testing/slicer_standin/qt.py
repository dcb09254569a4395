"""A minimal fake of PythonQt's ``qt`` module, for testing L3Locator.py without Slicer.

Only what the module, Slicer's own ``slicer.util`` helpers it calls (``loadUI``,
``childWidgetVariables``, ``WaitCursor``, ``tryWithErrorDisplay``) and the stand-in
``parameterNodeWrapper`` touch is here. Widgets behave like PythonQt exposes them:
Qt properties are plain attributes (``button.enabled = False``), ``setX(v)`` sets
property ``x``, signals work both as ``w.connect("clicked(bool)", slot)`` and
``w.clicked.connect(slot)``. ``QUiLoader`` builds these widgets from a real ``.ui``
file (class names, object names, properties, dynamic properties, connections).

A slot that raises is logged and swallowed, as PythonQt does (it prints the
traceback to the console and the application goes on).
"""

from __future__ import annotations

import logging
import traceback
import xml.etree.ElementTree as ET

#: Every exception raised by a slot, in order (PythonQt prints them; tests read them).
slotExceptions: list[BaseException] = []


class Signal:
    def __init__(self, owner, name):
        self.owner = owner
        self.name = name
        self.slots = []

    def connect(self, slot):
        self.slots.append(slot)

    def disconnect(self, slot=None):
        if slot is None:
            self.slots.clear()
        elif slot in self.slots:
            self.slots.remove(slot)

    def emit(self, *args):
        for slot in list(self.slots):
            try:
                _call(slot, args)
            except Exception as error:  # PythonQt: print and go on
                slotExceptions.append(error)
                logging.error("Exception in slot for %s.%s:\n%s", type(self.owner).__name__,
                              self.name, traceback.format_exc())


def _call(slot, args):
    """Call a slot with as many of the signal's arguments as it accepts (like Qt)."""
    import inspect

    try:
        sig = inspect.signature(slot)
    except (TypeError, ValueError):
        return slot(*args)
    params = [p for p in sig.parameters.values()
              if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if any(p.kind == p.VAR_POSITIONAL for p in sig.parameters.values()):
        return slot(*args)
    return slot(*args[:len(params)])


class QObject:
    SIGNALS: tuple = ("destroyed",)

    def __init__(self, parent=None):
        object.__setattr__(self, "_signals", {})
        object.__setattr__(self, "_dynamicProperties", {})
        object.__setattr__(self, "_children", [])
        self.name = ""
        self._parent = None
        if parent is not None:
            self.setParent(parent)

    # PythonQt exposes objectName as both `name` and `objectName`
    @property
    def objectName(self):
        return self.name

    @objectName.setter
    def objectName(self, value):
        self.name = value

    def setObjectName(self, value):
        self.name = value

    def className(self):
        return type(self).__name__

    def parent(self):
        return self._parent

    def setParent(self, parent):
        if self._parent is not None and self in self._parent._children:
            self._parent._children.remove(self)
        self._parent = parent
        if parent is not None:
            parent._children.append(self)

    def children(self):
        return list(self._children)

    def findChildren(self, cls=None):
        found = []
        for child in self._children:
            if cls is None or isinstance(child, cls):
                found.append(child)
            found.extend(child.findChildren(cls))
        return found

    def property(self, name):
        if name in self._dynamicProperties:
            return self._dynamicProperties[name]
        return None

    def setProperty(self, name, value):
        self._dynamicProperties[name] = value

    def _signal(self, name):
        if name not in self._signals:
            self._signals[name] = Signal(self, name)
        return self._signals[name]

    def _hasSignal(self, name):
        return any(name in getattr(k, "SIGNALS", ()) for k in type(self).__mro__)

    def connect(self, signature, slot):
        name = signature.split("(")[0]
        if not self._hasSignal(name):
            raise AttributeError(f"{type(self).__name__} has no signal {signature}")
        self._signal(name).connect(slot)
        return True

    def disconnect(self, signature, slot=None):
        self._signal(signature.split("(")[0]).disconnect(slot)
        return True

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        if self._hasSignal(name):
            return self._signal(name)
        if name.startswith("set") and len(name) > 3 and name[3].isupper():
            attr = name[3].lower() + name[4:]
            return lambda value: setattr(self, attr, value)
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")


class QLayout(QObject):
    def __init__(self, parent=None):
        super().__init__(None)
        self.widgets = []
        if parent is not None:
            parent.setLayout(self)

    def addWidget(self, widget, *args):
        self.widgets.append(widget)
        if self._parent is not None:
            widget.setParent(self._parent)

    def addStretch(self, *args):
        pass

    def addRow(self, *args):
        for arg in args:
            if isinstance(arg, QWidget):
                self.addWidget(arg)

    def addLayout(self, layout, *args):
        pass


class QVBoxLayout(QLayout):
    pass


class QHBoxLayout(QLayout):
    pass


class QFormLayout(QLayout):
    pass


class QGridLayout(QLayout):
    pass


class QWidget(QObject):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.enabled = True
        self.visible = True
        self.toolTip = ""
        self.statusTip = ""
        self._layout = None

    def layout(self):
        return self._layout

    def setLayout(self, layout):
        self._layout = layout
        layout._parent = self

    def show(self):
        self.visible = True

    def hide(self):
        self.visible = False

    def isWidgetType(self):
        return True

    def deleteLater(self):
        pass


class QFrame(QWidget):
    pass


class QGroupBox(QWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.title = ""


class QAbstractButton(QWidget):
    SIGNALS = ("clicked", "toggled", "pressed", "released")

    def __init__(self, text="", parent=None):
        if isinstance(text, QObject):
            text, parent = "", text
        super().__init__(parent)
        self.text = text
        self.checkable = False
        self._checked = False

    @property
    def checked(self):
        return self._checked

    @checked.setter
    def checked(self, value):
        value = bool(value)
        if value != self._checked:
            self._checked = value
            self.toggled.emit(value)
            self._onCheckedChanged(value)

    def _onCheckedChanged(self, value):
        pass

    def isChecked(self):
        return self._checked

    def click(self):
        """Like QAbstractButton::click(): does nothing when the button is disabled."""
        if not self.enabled:
            return
        if self.checkable:
            self.checked = not self.checked
        self.clicked.emit(self.checked)


class QPushButton(QAbstractButton):
    pass


class QToolButton(QAbstractButton):
    pass


class QCheckBox(QAbstractButton):
    SIGNALS = ("stateChanged",)

    def __init__(self, text="", parent=None):
        super().__init__(text, parent)
        self.checkable = True

    def _onCheckedChanged(self, value):
        self.stateChanged.emit(2 if value else 0)


class QRadioButton(QCheckBox):
    pass


class QLabel(QWidget):
    def __init__(self, text="", parent=None):
        if isinstance(text, QObject):
            text, parent = "", text
        super().__init__(parent)
        self.text = text
        self.wordWrap = False
        self._pixmap = None

    def setPixmap(self, pixmap):
        self._pixmap = pixmap

    def pixmap(self):
        return self._pixmap

    def clear(self):
        self.text = ""
        self._pixmap = None


class QLineEdit(QWidget):
    SIGNALS = ("textChanged", "editingFinished")

    def __init__(self, parent=None):
        super().__init__(parent)
        self._text = ""
        self.placeholderText = ""

    @property
    def text(self):
        return self._text

    @text.setter
    def text(self, value):
        if value != self._text:
            self._text = value
            self.textChanged.emit(value)


class QComboBox(QWidget):
    SIGNALS = ("currentIndexChanged", "currentTextChanged", "activated")

    def __init__(self, parent=None):
        super().__init__(parent)
        self._items = []
        self._currentIndex = -1

    def addItem(self, text, userData=None):
        self._items.append((str(text), userData))
        if self._currentIndex < 0:
            self.currentIndex = 0

    def addItems(self, texts):
        for text in texts:
            self.addItem(text)

    def clear(self):
        self._items = []
        self._currentIndex = -1

    def count(self):
        return len(self._items)

    def itemText(self, index):
        return self._items[index][0]

    def findText(self, text):
        for index, (itemText, _) in enumerate(self._items):
            if itemText == text:
                return index
        return -1

    @property
    def currentIndex(self):
        return self._currentIndex

    @currentIndex.setter
    def currentIndex(self, index):
        if index != self._currentIndex:
            self._currentIndex = index
            self.currentIndexChanged.emit(index)
            self.currentTextChanged.emit(self.currentText)

    @property
    def currentText(self):
        return self._items[self._currentIndex][0] if self._currentIndex >= 0 else ""


class QSpinBox(QWidget):
    SIGNALS = ("valueChanged",)


class QDoubleSpinBox(QSpinBox):
    pass


class QSlider(QSpinBox):
    pass


class QTextEdit(QWidget):
    SIGNALS = ("textChanged",)


class QSpacerItem:
    def __init__(self, *args):
        pass


class QPixmap:
    def __init__(self, path=""):
        self.path = str(path)

    def isNull(self):
        import os

        return not (self.path and os.path.isfile(self.path))

    def width(self):
        return self._size()[0]

    def height(self):
        return self._size()[1]

    def _size(self):
        try:
            from PIL import Image

            with Image.open(self.path) as image:
                return image.size
        except Exception:
            return (0, 0)

    def scaledToWidth(self, width, mode=None):
        return self


class QIcon:
    def __init__(self, path=""):
        self.path = str(path)


class QCursor:
    def __init__(self, shape=None):
        self._shape = shape

    def shape(self):
        return self._shape


class Qt:
    WaitCursor = 3
    BusyCursor = 16
    ArrowCursor = 0
    SmoothTransformation = 1
    AlignCenter = 0x84


class QApplication:
    #: the override cursor stack (WaitCursor/BusyCursor pushed by Slicer's helpers)
    overrideCursors: list = []

    @classmethod
    def setOverrideCursor(cls, cursor):
        cls.overrideCursors.append(cursor)

    @classmethod
    def restoreOverrideCursor(cls):
        if cls.overrideCursors:
            cls.overrideCursors.pop()

    @classmethod
    def overrideCursor(cls):
        return QCursor(cls.overrideCursors[-1]) if cls.overrideCursors else None

    @staticmethod
    def processEvents():
        pass


class QMessageBox(QWidget):
    Ok = 0x400
    Cancel = 0x400000
    Yes = 0x4000
    No = 0x10000
    Retry = 0x80000
    Close = 0x200000
    NoButton = 0
    Information = 1
    Warning = 2
    Critical = 3
    Question = 4


class QSettings:
    _values: dict = {}

    def value(self, key, default=None):
        return self._values.get(key, default)

    def setValue(self, key, value):
        self._values[key] = value

    def contains(self, key):
        return key in self._values


class QFile:
    ReadOnly = 1

    def __init__(self, path):
        self.path = str(path)

    def exists(self):
        import os

        return os.path.isfile(self.path)

    def open(self, mode):
        return self.exists()

    def close(self):
        pass


class QUiLoader:
    """Builds fake widgets from a Qt Designer ``.ui`` file."""

    def load(self, qfile, parent=None):
        root = ET.parse(qfile.path).getroot()
        top = self._build(root.find("widget"), parent)
        for connection in root.iter("connection"):
            self._connect(top, connection)
        return top

    def _build(self, element, parent):
        cls = _widgetClass(element.get("class"))
        widget = cls() if parent is None else cls(parent)
        if parent is None and widget.parent() is not None:
            widget.setParent(None)
        widget.name = element.get("name", "")
        for prop in element.findall("property"):
            value = _propertyValue(prop)
            if prop.get("stdset") == "0":
                widget.setProperty(prop.get("name"), value)
            else:
                try:
                    setattr(widget, prop.get("name"), value)
                except AttributeError:
                    pass
        for child in element:
            if child.tag == "widget":
                self._build(child, widget)
            elif child.tag == "layout":
                self._buildLayout(child, widget)
        return widget

    def _buildLayout(self, element, widget):
        for item in element.findall("item"):
            for child in item:
                if child.tag == "widget":
                    self._build(child, widget)
                elif child.tag == "layout":
                    self._buildLayout(child, widget)

    def _connect(self, top, connection):
        everything = [top, *top.findChildren()]
        byName = {w.name: w for w in everything}
        sender = byName[connection.findtext("sender")]
        receiver = byName[connection.findtext("receiver")]
        signal = connection.findtext("signal")
        slotName = connection.findtext("slot").split("(")[0]
        sender.connect(signal, getattr(receiver, slotName))


def _propertyValue(prop):
    value = list(prop)[0] if len(prop) else None
    if value is None:
        return None
    if value.tag == "bool":
        return value.text == "true"
    if value.tag in ("number", "enum"):
        try:
            return int(value.text)
        except (TypeError, ValueError):
            return value.text
    if value.tag == "double":
        return float(value.text)
    if value.tag == "stringlist":
        return [s.text or "" for s in value.findall("string")]
    if value.tag == "string":
        return value.text or ""
    return value.text


#: class name in a .ui file -> fake class; filled by ctk and slicer stand-ins too
widgetClasses: dict = {}


def _widgetClass(name):
    if name in widgetClasses:
        return widgetClasses[name]
    if name in globals() and isinstance(globals()[name], type):
        return globals()[name]
    import ctk  # noqa: F401  (registers ctk classes)
    import slicer  # noqa: F401  (registers qMRML classes)

    return widgetClasses.get(name, QWidget)
