/*
 * TensorRT stand-in (tests only): the version this stand-in models.
 *
 * The headers in this folder declare, from TensorRT's documented C++ API, exactly the subset that
 * the ReweightArgmax plugin and its test host (../pluginHostTest.cpp) use, so that the host can be
 * built where no TensorRT is installed (CI). They are written for this project, hold no TensorRT
 * code and are never used to build the shipped plugin library. Where real TensorRT headers exist
 * (TensorRT_ROOT, DANNET_TRT_HEADERS) the host is also built against those; the real headers are the
 * authority and take precedence over anything written here.
 *
 * The stand-in follows the TensorRT 11 API (ILogger and ILoggerFinder are versioned interfaces, the
 * plugin registry has no IPluginCreator (V2) methods).
 */
#pragma once

#define NV_TENSORRT_MAJOR 11
#define NV_TENSORRT_MINOR 1
#define NV_TENSORRT_PATCH 0

//! Set only by the stand-in, so that a test can say which header set it was built against.
#define DANNET_TENSORRT_STANDIN 1
