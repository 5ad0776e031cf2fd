/*
 * TensorRT stand-in (tests only; see NvInferVersion.h): what plugins and their creators exchange,
 * as TensorRT 10.3 declares it: tensor descriptions, attributes (fields), phases, and the root of
 * every creator. Real headers take precedence.
 */
#pragma once

#include "NvInferRuntimeBase.h"

namespace nvinfer1
{

//! A tensor as a plugin sees it at run time (and, with -1 extents, while the engine is built).
struct PluginTensorDesc
{
    Dims dims;
    DataType type;
    TensorFormat format;
    float scale; //!< only meaningful for kINT8
};

//! TensorRT 10.3's field types (kFP4 came with a newer version).
enum class PluginFieldType : int32_t
{
    kFLOAT16 = 0,
    kFLOAT32 = 1,
    kFLOAT64 = 2,
    kINT8 = 3,
    kINT16 = 4,
    kINT32 = 5,
    kCHAR = 6,
    kDIMS = 7,
    kUNKNOWN = 8,
    kBF16 = 9,
    kINT64 = 10,
    kFP8 = 11,
    kINT4 = 12,
};

//! One attribute: `length` values of `type` at `data` (borrowed, not owned).
class PluginField
{
public:
    AsciiChar const* name;
    void const* data;
    PluginFieldType type;
    int32_t length;

    PluginField(AsciiChar const* const name_ = nullptr, void const* const data_ = nullptr,
        PluginFieldType const type_ = PluginFieldType::kUNKNOWN, int32_t const length_ = 0) noexcept
        : name(name_)
        , data(data_)
        , type(type_)
        , length(length_)
    {
    }
};

struct PluginFieldCollection
{
    int32_t nbFields;
    PluginField const* fields;
};

enum class PluginCapabilityType : int32_t
{
    kCORE = 0,
    kBUILD = 1,
    kRUNTIME = 2
};

//! Whether a plugin is created to build an engine or to run a deserialised one.
enum class TensorRTPhase : int32_t
{
    kBUILD = 0,
    kRUNTIME = 1
};

namespace v_1_0
{

//! Base of every plugin creator generation; TensorRT tells them apart by getInterfaceInfo().
class IPluginCreatorInterface : public IVersionedInterface
{
public:
    ~IPluginCreatorInterface() noexcept override = default;

protected:
    IPluginCreatorInterface() = default;
    IPluginCreatorInterface(IPluginCreatorInterface const&) = default;
    IPluginCreatorInterface(IPluginCreatorInterface&&) = default;
    IPluginCreatorInterface& operator=(IPluginCreatorInterface const&) & = default;
    IPluginCreatorInterface& operator=(IPluginCreatorInterface&&) & = default;
};

//! The deprecated creator of IPluginV2 plugins: only named here, by the registry's V2 methods.
class IPluginCreator;

} // namespace v_1_0

using IPluginCreatorInterface = v_1_0::IPluginCreatorInterface;
using IPluginCreator = v_1_0::IPluginCreator;

} // namespace nvinfer1
