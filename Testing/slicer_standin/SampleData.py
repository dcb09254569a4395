"""Stand-in for Slicer's Sample Data module (``Modules/Scripted/SampleData/SampleData.py``):
``SampleDataSource`` and ``SampleDataLogic.registerCustomSampleDataSource`` with Slicer's
signatures, and what the module's button does for a source with a ``customDownloader``
(``clickButton``: Slicer 5.x calls ``source.customDownloader(source)``). Nothing is
downloaded."""

from __future__ import annotations

import slicer


class SampleDataSource:
    def __init__(self, sampleName=None, sampleDescription=None, uris=None, fileNames=None,
                 nodeNames=None, checksums=None, loadFiles=None, customDownloader=None,
                 thumbnailFileName=None, loadFileTypes=None, loadFileProperties=None,
                 loadFileType=None):
        if loadFileType is not None and loadFileTypes is None:
            loadFileTypes = loadFileType
        self.sampleName = sampleName
        self.sampleDescription = sampleName if sampleDescription is None else sampleDescription
        if isinstance(uris, (list, tuple)):
            if isinstance(loadFileTypes, str) or loadFileTypes is None:
                loadFileTypes = [loadFileTypes] * len(uris)
            nodeNames = [None] * len(uris) if nodeNames is None else nodeNames
            loadFiles = [None] * len(uris) if loadFiles is None else loadFiles
            checksums = [None] * len(uris) if checksums is None else checksums
        elif isinstance(uris, str):
            uris, fileNames, nodeNames = [uris], [fileNames], [nodeNames]
            loadFiles, loadFileTypes, checksums = [loadFiles], [loadFileTypes], [checksums]
        self.uris = uris
        self.fileNames = fileNames
        self.nodeNames = nodeNames
        self.loadFiles = loadFiles
        self.customDownloader = customDownloader
        self.thumbnailFileName = thumbnailFileName
        self.loadFileTypes = loadFileTypes
        self.loadFileProperties = loadFileProperties or {}
        self.checksums = checksums
        if not len(uris) == len(fileNames) == len(nodeNames) == len(loadFiles) == len(
                loadFileTypes) == len(checksums):
            raise ValueError("All fields of sample data source must have the same length")


class SampleDataLogic:
    @staticmethod
    def registerCustomSampleDataSource(category="Custom", sampleName=None, uris=None,
                                       fileNames=None, nodeNames=None, customDownloader=None,
                                       thumbnailFileName=None, loadFileTypes=None,
                                       loadFiles=None, loadFileProperties={}, checksums=None,  # noqa: B006
                                       loadFileType=None):
        sources = slicer.modules.__dict__.setdefault("sampleDataSources", {})
        source = SampleDataSource(
            sampleName=sampleName, uris=uris, fileNames=fileNames, nodeNames=nodeNames,
            thumbnailFileName=thumbnailFileName, loadFileTypes=loadFileTypes,
            loadFiles=loadFiles, loadFileProperties=loadFileProperties, checksums=checksums,
            customDownloader=customDownloader, loadFileType=loadFileType)
        sources.setdefault(category, []).append(source)


def clickButton(sampleName):
    """What the Sample Data panel's button for ``sampleName`` does (stand-in only)."""
    for sources in slicer.modules.sampleDataSources.values():
        for source in sources:
            if source.sampleName == sampleName:
                if source.customDownloader:
                    return source.customDownloader(source)
                raise NotImplementedError("the stand-in downloads nothing")
    raise KeyError(sampleName)
