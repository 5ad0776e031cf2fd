/*
 * TensorRT stand-in (tests only; see NvInferVersion.h): basic types shared by every interface, as
 * TensorRT 10.3 declares them. Real headers take precedence.
 */
#pragma once

#include "NvInferVersion.h"

#include <cstddef>
#include <cstdint>
#include <cuda_runtime_api.h> // cudaStream_t, as TensorRT's own headers include it

//! Symbols that libnvinfer exports (default visibility; the test host defines them).
#define TENSORRTAPI __attribute__((visibility("default")))

//! TensorRT's mark of an API kept for compatibility only: using it is a warning (an error with -Werror).
#define TRT_DEPRECATED [[deprecated]]

//! One integer per version, comparable in preprocessor conditions.
#define NV_TENSORRT_VERSION_INT(major, minor, patch) ((major) *10000L + (minor) *100L + (patch) *1L)
#define NV_TENSORRT_VERSION NV_TENSORRT_VERSION_INT(NV_TENSORRT_MAJOR, NV_TENSORRT_MINOR, NV_TENSORRT_PATCH)

namespace nvinfer1
{

using char_t = char;
using AsciiChar = char_t;

namespace v_1_0
{
class IErrorRecorder;
class IGpuAllocator;
class IPluginResource;
} // namespace v_1_0
using IErrorRecorder = v_1_0::IErrorRecorder;
using IGpuAllocator = v_1_0::IGpuAllocator;
using IPluginResource = v_1_0::IPluginResource;

namespace impl
{
//! Specialised for each enum: kVALUE is one past its largest enumerator.
template <typename T>
struct EnumMaxImpl;
} // namespace impl

//! Number of enumerators of T (all of them consecutive from 0), e.g. to enumerate every DataType.
template <typename T>
constexpr int32_t EnumMax() noexcept
{
    return impl::EnumMaxImpl<T>::kVALUE;
}

//! TensorRT 10.3's types (kFP4 and later came with newer versions).
enum class DataType : int32_t
{
    kFLOAT = 0,
    kHALF = 1,
    kINT8 = 2,
    kINT32 = 3,
    kBOOL = 4,
    kUINT8 = 5,
    kFP8 = 6,
    kBF16 = 7,
    kINT64 = 8,
    kINT4 = 9,
};

template <>
struct impl::EnumMaxImpl<DataType>
{
    static constexpr int32_t kVALUE = 10;
};

//! A tensor shape: nbDims extents (-1 for a dimension only known at run time).
class Dims64
{
public:
    static constexpr int32_t MAX_DIMS{8};
    int32_t nbDims;
    int64_t d[MAX_DIMS];
};

using Dims = Dims64;

enum class TensorFormat : int32_t
{
    kLINEAR = 0,
    kCHW2 = 1,
    kHWC8 = 2,
    kCHW4 = 3,
    kCHW16 = 4,
    kCHW32 = 5,
    kDHWC8 = 6,
    kCDHW32 = 7,
    kHWC = 8,
    kDLA_LINEAR = 9,
    kDLA_HWC4 = 10,
    kHWC16 = 11,
    kDHWC = 12
};

template <>
struct impl::EnumMaxImpl<TensorFormat>
{
    static constexpr int32_t kVALUE = 13;
};

//! Which interface (and which version of it) an object implements: TensorRT reads this before it
//! casts a base pointer to the interface it names.
using InterfaceKind = char const*;

class InterfaceInfo
{
public:
    InterfaceKind kind;
    int32_t major;
    int32_t minor;
};

enum class APILanguage : int32_t
{
    kCPP = 0,
    kPYTHON = 1
};

template <>
struct impl::EnumMaxImpl<APILanguage>
{
    static constexpr int32_t kVALUE = 2;
};

//! Base of the interfaces that carry an InterfaceInfo (plugins, their capabilities and creators).
class IVersionedInterface
{
public:
    virtual APILanguage getAPILanguage() const noexcept
    {
        return APILanguage::kCPP;
    }

    virtual InterfaceInfo getInterfaceInfo() const noexcept = 0;

    virtual ~IVersionedInterface() noexcept = default;

protected:
    IVersionedInterface() = default;
    IVersionedInterface(IVersionedInterface const&) = default;
    IVersionedInterface(IVersionedInterface&&) = default;
    IVersionedInterface& operator=(IVersionedInterface const&) & = default;
    IVersionedInterface& operator=(IVersionedInterface&&) & = default;
};

//! Application-implemented logging interface; must be thread-safe. (TensorRT 11 made it a versioned
//! interface; in 10.3 it is a plain one.)
class ILogger
{
public:
    enum class Severity : int32_t
    {
        kINTERNAL_ERROR = 0,
        kERROR = 1,
        kWARNING = 2,
        kINFO = 3,
        kVERBOSE = 4,
    };

    virtual void log(Severity severity, AsciiChar const* msg) noexcept = 0;

    ILogger() = default;
    virtual ~ILogger() = default;

protected:
    ILogger(ILogger const&) = default;
    ILogger(ILogger&&) = default;
    ILogger& operator=(ILogger const&) & = default;
    ILogger& operator=(ILogger&&) & = default;
};

} // namespace nvinfer1
