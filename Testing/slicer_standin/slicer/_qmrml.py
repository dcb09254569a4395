"""Fakes of the Qt MRML widgets PythonQt puts in the ``slicer`` namespace."""

from __future__ import annotations

import qt


class qSlicerWidget(qt.QWidget):
    SIGNALS = ("mrmlSceneChanged",)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._scene = None

    def mrmlScene(self):
        return self._scene

    def setMRMLScene(self, scene):
        self._scene = scene
        self.mrmlSceneChanged.emit(scene)


class qMRMLWidget(qSlicerWidget):
    pass


class qMRMLNodeComboBox(qt.QWidget):
    """Node selector: like Slicer's, the current node is one of the scene's nodes of
    ``nodeTypes``; it does not pick a node by itself (the module's parameter node does)."""

    SIGNALS = ("currentNodeChanged", "currentNodeIDChanged", "nodeAdded", "nodeActivated")

    def __init__(self, parent=None):
        super().__init__(parent)
        self.nodeTypes = []
        self.noneEnabled = False
        self.addEnabled = False
        self.removeEnabled = False
        self.renameEnabled = False
        self.editEnabled = False
        self.showHidden = False
        self.showChildNodeTypes = True
        self.selectNodeUponCreation = True
        self.noneDisplay = ""
        self._scene = None
        self._current = None

    def setMRMLScene(self, scene):
        self._scene = scene
        if self._current is not None and scene is not None:
            if scene.GetNodeByID(self._current.GetID()) is not self._current:
                self.setCurrentNode(None)

    def mrmlScene(self):
        return self._scene

    def currentNode(self):
        return self._current

    @property
    def currentNodeID(self):
        return self._current.GetID() if self._current is not None else ""

    def setCurrentNodeID(self, nodeID):
        node = self._scene.GetNodeByID(nodeID) if (self._scene and nodeID) else None
        self.setCurrentNode(node)

    def setCurrentNode(self, node):
        if node is not None:
            if self._scene is None or self._scene.GetNodeByID(node.GetID()) is not node:
                raise ValueError("qMRMLNodeComboBox: the node is not in the combo box's scene")
            if self.nodeTypes and not any(node.IsA(t) for t in self.nodeTypes):
                raise ValueError(f"qMRMLNodeComboBox: {node.GetClassName()} is not one of "
                                 f"{self.nodeTypes}")
        if node is self._current:
            return
        self._current = node
        self.currentNodeChanged.emit(node)
        self.currentNodeIDChanged.emit(self.currentNodeID)


for _cls in (qSlicerWidget, qMRMLWidget, qMRMLNodeComboBox):
    qt.widgetClasses[_cls.__name__] = _cls
