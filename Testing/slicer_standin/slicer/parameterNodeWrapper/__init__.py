"""Stand-in for Slicer's ``slicer.parameterNodeWrapper`` (Base/Python/slicer/parameterNodeWrapper).

Same decorator and same instance API (typed properties stored in a real
``vtkMRMLScriptedModuleNode``, ``connectGui``/``disconnectGui`` through the
``SlicerParameterName`` dynamic property, ``StartModify``/``EndModify``/
``AddObserver``/``RemoveObserver``), for the types L3Locator uses: ``bool``, ``int``,
``float``, ``str`` (optionally ``Annotated`` with ``Choice``/``Default``/``WithinRange``),
``pathlib.Path`` and MRML node classes. Like Slicer's, annotations are read with
``typing.get_type_hints(include_extras=True)``, so ``from __future__ import annotations``
works as long as the names are importable from the module.
"""

from __future__ import annotations

import dataclasses
import pathlib
import typing

import vtk

SlicerParameterNamePropertyName = "SlicerParameterName"

__all__ = ["parameterNodeWrapper", "Choice", "Default", "WithinRange", "Minimum", "Maximum",
           "isParameterNodeWrapper", "SlicerParameterNamePropertyName"]


@dataclasses.dataclass
class Choice:
    choices: typing.Any


@dataclasses.dataclass
class Default:
    value: typing.Any


@dataclasses.dataclass
class WithinRange:
    minimum: typing.Any
    maximum: typing.Any


@dataclasses.dataclass
class Minimum:
    minimum: typing.Any


@dataclasses.dataclass
class Maximum:
    maximum: typing.Any


def _isNodeType(t) -> bool:
    return isinstance(t, type) and issubclass(t, vtk.vtkObject) and t.__name__.startswith("vtkMRML")


class _Parameter:
    def __init__(self, name, hint, classDefault, hasClassDefault):
        self.name = name
        self.annotations = []
        if typing.get_origin(hint) is typing.Annotated:
            self.type, *self.annotations = typing.get_args(hint)
        else:
            self.type = hint
        if typing.get_origin(self.type) is typing.Union:  # Optional[node]
            args = [a for a in typing.get_args(self.type) if a is not type(None)]
            self.type = args[0]
        if not (_isNodeType(self.type) or self.type in (bool, int, float, str, pathlib.Path)):
            raise TypeError(
                f"stand-in parameterNodeWrapper: unsupported type {self.type} for {name}")
        default = next((a.value for a in self.annotations if isinstance(a, Default)), None)
        if hasClassDefault:
            default = classDefault
        if default is None and not _isNodeType(self.type):
            default = self.type()
        self.default = default

    def validate(self, value):
        for a in self.annotations:
            if isinstance(a, Choice) and value not in a.choices:
                raise ValueError(f"{self.name}: {value!r} is not one of {a.choices}")
            if isinstance(a, WithinRange) and not (a.minimum <= value <= a.maximum):
                raise ValueError(f"{self.name}: {value!r} is outside [{a.minimum}, {a.maximum}]")

    def isIn(self, node):
        if _isNodeType(self.type):
            return node.GetNodeReferenceID(self.name) is not None or node.GetParameter(
                self.name + "__none") == "1"
        return bool(node.GetParameterNames()) and self.name in node.GetParameterNames()

    def write(self, node, value):
        if _isNodeType(self.type):
            if value is not None and not value.IsA(self.type.__name__):
                raise ValueError(
                    f"{self.name}: {value.GetClassName()} is not a {self.type.__name__}")
            node.SetNodeReferenceID(self.name, value.GetID() if value is not None else None)
            return
        value = self.type(value)
        self.validate(value)
        if self.type is bool:
            text = "True" if value else "False"
        else:
            text = str(value)
        node.SetParameter(self.name, text)

    def read(self, node):
        if _isNodeType(self.type):
            return node.GetNodeReference(self.name)
        text = node.GetParameter(self.name)
        if self.type is bool:
            return text == "True"
        return self.type(text)


_PATH_TYPES = (pathlib.Path, pathlib.PosixPath, pathlib.WindowsPath, pathlib.PurePath,
               pathlib.PurePosixPath, pathlib.PureWindowsPath)


def _connectors(widget, parameter):
    """(read, write, signal) for the fake/real widget types the module uses."""
    import ctk
    import qt

    import slicer

    if isinstance(widget, slicer.qMRMLNodeComboBox):
        widget.nodeTypes = [parameter.type.__name__]
        return widget.currentNode, widget.setCurrentNode, widget.currentNodeChanged
    if isinstance(widget, qt.QCheckBox):
        return (lambda: widget.checked), (lambda v: setattr(widget, "checked", v)), widget.toggled
    if isinstance(widget, qt.QComboBox):
        choice = next(a for a in parameter.annotations if isinstance(a, Choice))
        widget.clear()
        for c in choice.choices:
            widget.addItem(str(c))

        def write(v):
            widget.currentIndex = list(choice.choices).index(v)

        return (lambda: choice.choices[widget.currentIndex]), write, widget.currentIndexChanged
    if isinstance(widget, ctk.ctkPathLineEdit) and parameter.type in _PATH_TYPES:
        # Slicer's ctkPathLineEditToPathWrapper represents pathlib paths only, not str
        # (Base/Python/slicer/parameterNodeWrapper/guiConnectors.py)
        return ((lambda: parameter.type(widget.currentPath)),
                (lambda v: setattr(widget, "currentPath", str(v))), widget.currentPathChanged)
    if isinstance(widget, qt.QLineEdit):
        return (lambda: widget.text), (lambda v: setattr(widget, "text", v)), widget.textChanged
    raise RuntimeError(f"Unable to create GUI connector from datatype '{parameter.type}' to "
                       f"widget type '{type(widget)}'")


def _processClass(cls):
    hints = typing.get_type_hints(cls, include_extras=True)
    allParameters = {}
    for name, hint in hints.items():
        hasDefault = name in cls.__dict__
        allParameters[name] = _Parameter(name, hint, cls.__dict__.get(name), hasDefault)

    def __init__(self, parameterNode):
        self.parameterNode = parameterNode
        self._guis = {}
        self._nextTag = 0
        self._updating = False
        for p in allParameters.values():
            if not p.isIn(parameterNode):
                p.write(parameterNode, p.default)

    def makeProperty(p):
        return property(lambda self: p.read(self.parameterNode),
                        lambda self, value: p.write(self.parameterNode, value))

    for name, p in allParameters.items():
        setattr(cls, name, makeProperty(p))

    def connectGui(self, gui):
        widgets = {}
        if hasattr(gui, "findChildren"):
            candidates = gui.findChildren()
        else:
            candidates = list(vars(gui).values())
        for widget in candidates:
            paramName = widget.property(SlicerParameterNamePropertyName) if hasattr(
                widget, "property") else None
            if paramName:
                if paramName not in allParameters:
                    raise ValueError(f"Cannot find a param with the given name: {paramName}")
                widgets[paramName] = widget
        tag = self._nextTag
        self._nextTag += 1
        mapping = {}
        for paramName, widget in widgets.items():
            read, write, signal = _connectors(widget, allParameters[paramName])
            write(getattr(self, paramName))

            def onChanged(*args, _name=paramName, _read=read):
                if not self._updating:
                    setattr(self, _name, _read())

            signal.connect(onChanged)
            mapping[paramName] = (write, signal, onChanged)

        def updateGui(caller=None, event=None):
            if self._updating or tag not in self._guis:
                return
            self._updating = True
            try:
                for name_, (write_, _, _) in self._guis[tag][0].items():
                    write_(getattr(self, name_))
            finally:
                self._updating = False

        observer = self.parameterNode.AddObserver(vtk.vtkCommand.ModifiedEvent, updateGui)
        self._guis[tag] = (mapping, observer)
        return tag

    def disconnectGui(self, tag):
        if tag in self._guis:
            mapping, observer = self._guis.pop(tag)
            for _, signal, onChanged in mapping.values():
                signal.disconnect(onChanged)
            self.parameterNode.RemoveObserver(observer)

    cls.__init__ = __init__
    cls.allParameters = allParameters
    cls._is_parameter_node_wrapper = True
    cls.connectGui = connectGui
    cls.disconnectGui = disconnectGui
    cls.getValue = lambda self, name: getattr(self, name)
    cls.setValue = lambda self, name, value: setattr(self, name, value)
    cls.default = lambda self, name: allParameters[name].default
    cls.StartModify = lambda self: self.parameterNode.StartModify()
    cls.EndModify = lambda self, wasModified: self.parameterNode.EndModify(wasModified)
    cls.AddObserver = lambda self, event, callback, priority=0.0: self.parameterNode.AddObserver(
        event, callback, priority)
    cls.RemoveObserver = lambda self, tag: self.parameterNode.RemoveObserver(tag)
    cls.Modified = lambda self: self.parameterNode.Modified()
    return cls


def parameterNodeWrapper(classtype=None):
    if classtype is None:
        return _processClass
    return _processClass(classtype)


def isParameterNodeWrapper(classOrObj):
    return getattr(classOrObj, "_is_parameter_node_wrapper", False)
