/*
 * TensorRT stand-in (tests only; see NvInferVersion.h): basic types shared by every interface.
 * Names, enum values and layouts follow TensorRT's documented API; real headers take precedence.
 */
#pragma once

#include "NvInferVersion.h"

#include <cstddef>
#include <cstdint>
#include <cuda_runtime_api.h> // cudaStream_t, as TensorRT's own headers include it

//! Symbols that libnvinfer exports (default visibility; the test host defines them).
#define TENSORRTAPI __attribute__((visibility("default")))

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
class ILogger;
class IGpuAllocator;
} // namespace v_1_0
using IErrorRecorder = v_1_0::IErrorRecorder;
using ILogger = v_1_0::ILogger;
using IGpuAllocator = v_1_0::IGpuAllocator;

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
    kFP4 = 10,
    kE8M0 = 11,
};

template <>
struct impl::EnumMaxImpl<DataType>
{
    static constexpr int32_t kVALUE = 12;
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

//! Base of the interfaces that carry an InterfaceInfo (plugins, creators, loggers in TensorRT 11).
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

} // namespace nvinfer1
