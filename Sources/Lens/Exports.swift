// What the command line needs of the modules below Lens: the definition choices it parses
// (token selection, distance convention, representation kind, resize mode, pooling), the
// fine-tuning settings, the engine's errors and the thread and kernel settings.
@_exported import Analysis
@_exported import Engine
@_exported import Images
@_exported import Train
@_exported import VitLensCore
