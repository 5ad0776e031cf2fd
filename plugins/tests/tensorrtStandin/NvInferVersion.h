/*
 * TensorRT stand-in (tests only): the version this stand-in models.
 *
 * The headers in this folder declare, from TensorRT's documented C++ API, exactly the subset that
 * the ReweightArgmax plugin and its test host (../pluginHost*.cpp) use, so that the host can be
 * built where no TensorRT is installed (CI). They are written for this project, hold no TensorRT
 * code and are never used to build the shipped plugin library. Where real TensorRT headers exist
 * (TensorRT_ROOT, DANNET_TRT_HEADERS) the host is also built against those; the real headers are the
 * authority and take precedence over anything written here.
 *
 * The stand-in models TensorRT 10.3, the oldest version the plugin supports (JetPack 6.1/6.2), and
 * declares nothing that 10.3 lacks: a plugin that starts using a newer API (a DataType or
 * PluginFieldType added later, IPluginRegistry::getAllCreatorsRecursive, TensorRT 11's versioned
 * ILogger) fails to compile in CI instead of on a Jetson. Like 10.3: ILogger and ILoggerFinder are
 * plain interfaces, and the plugin registry still has its (deprecated) IPluginCreator (V2) methods.
 */
#pragma once

#define NV_TENSORRT_MAJOR 10
#define NV_TENSORRT_MINOR 3
#define NV_TENSORRT_PATCH 0

//! Set only by the stand-in, so that a test can say which header set it was built against.
#define DANNET_TENSORRT_STANDIN 1
