"""Stand-in for Slicer's ``Base/Python/slicer/ScriptedLoadableModule.py`` (same names,
same behaviour for what L3Locator uses; developer section, screenshots left out)."""

from __future__ import annotations

import importlib
import logging
import os
import sys
import unittest

import qt

import slicer

__all__ = ["ScriptedLoadableModule", "ScriptedLoadableModuleWidget",
           "ScriptedLoadableModuleLogic", "ScriptedLoadableModuleTest"]


class _ModuleParent:
    """What a qSlicerScriptedLoadableModule exposes to the Python module class."""

    def __init__(self, path):
        self.path = path
        self.title = ""
        self.categories = []
        self.dependencies = []
        self.contributors = []
        self.helpText = ""
        self.acknowledgementText = ""
        self.icon = None
        self.hidden = False


class ScriptedLoadableModule:
    def __init__(self, parent):
        self.parent = parent
        self.moduleName = self.__class__.__name__
        parent.title = ""
        parent.categories = []
        parent.dependencies = []
        parent.contributors = []
        parent.helpText = ""
        parent.acknowledgementText = ""
        moduleDir = os.path.dirname(self.parent.path)
        iconPath = os.path.join(moduleDir, "Resources/Icons", self.moduleName + ".png")
        if os.path.isfile(iconPath):
            parent.icon = qt.QIcon(iconPath)
        slicer.selfTests[self.moduleName] = self.runTest

    @staticmethod
    def standinParent(moduleFile):
        """Build the ``parent`` Slicer's module factory would pass (stand-in only)."""
        return _ModuleParent(moduleFile)

    def getDefaultModuleDocumentationLink(self, docPage=None):
        return ""

    def runTest(self, msec=100, **kwargs):
        module = importlib.import_module(self.__module__)
        testCase = getattr(module, self.moduleName + "Test")()
        testCase.messageDelay = msec
        testCase.runTest(**kwargs)


class ScriptedLoadableModuleWidget:
    def __init__(self, parent=None):
        self.moduleName = self.__class__.__name__
        if self.moduleName.endswith("Widget"):
            self.moduleName = self.moduleName[:-6]
        self.developerMode = False
        if not parent:
            self.parent = slicer.qMRMLWidget()
            self.parent.setLayout(qt.QVBoxLayout())
            self.parent.setMRMLScene(slicer.mrmlScene)
        else:
            self.parent = parent
        self.parent.isEntered = False
        self.layout = self.parent.layout()
        if not parent:
            self.setup()
            self.parent.show()

    def resourcePath(self, filename):
        # Slicer: dirname(slicer.util.modulePath(moduleName)); the stand-in has no module
        # factory, so take the directory of the Python module that defines the widget.
        moduleFile = sys.modules[self.__class__.__module__].__file__
        return os.path.join(os.path.dirname(moduleFile), "Resources", filename)

    def cleanup(self):
        pass

    def setup(self):
        pass

    def enter(self):
        pass

    def exit(self):
        pass


class ScriptedLoadableModuleLogic:
    def __init__(self, parent=None):
        self.moduleName = self.__class__.__name__
        if self.moduleName.endswith("Logic"):
            self.moduleName = self.moduleName[:-5]
        self.isSingletonParameterNode = True

    def getParameterNode(self):
        if self.isSingletonParameterNode:
            node = slicer.mrmlScene.GetSingletonNode(self.moduleName, "vtkMRMLScriptedModuleNode")
            if node:
                if node.GetAttribute("ModuleName") != self.moduleName:
                    node.SetAttribute("ModuleName", self.moduleName)
                return node
        return slicer.mrmlScene.AddNode(self.createParameterNode())

    def createParameterNode(self):
        node = slicer.mrmlScene.CreateNodeByClass("vtkMRMLScriptedModuleNode")
        node.UnRegister(None)
        if self.isSingletonParameterNode:
            node.SetSingletonTag(self.moduleName)
        node.SetAttribute("ModuleName", self.moduleName)
        node.SetName(slicer.mrmlScene.GenerateUniqueName(self.moduleName))
        return node


class ScriptedLoadableModuleTest(unittest.TestCase):
    def delayDisplay(self, message, requestedDelay=None, msec=None):
        logging.info(message)
        slicer.util.delayDisplay(message)

    def takeScreenshot(self, name, description, type=-1):
        pass
