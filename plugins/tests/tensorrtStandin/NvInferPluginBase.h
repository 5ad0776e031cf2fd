/*
 * TensorRT stand-in (tests only; see NvInferVersion.h): plugin attributes (fields), phases, and the
 * IPluginV3 root interface. Names, enum values and layouts follow TensorRT's documented API; real
 * headers take precedence.
 */
#pragma once

#include "NvInferRuntimeBase.h"

namespace nvinfer1
{

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
    kFP4 = 13,
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
    int32_t nbFields{};
    PluginField const* fields{};
};

//! Whether a plugin is created to build an engine or to run a deserialised one.
enum class TensorRTPhase : int32_t
{
    kBUILD = 0,
    kRUNTIME = 1
};

enum class PluginCapabilityType : int32_t
{
    kCORE = 0,
    kBUILD = 1,
    kRUNTIME = 2
};

namespace v_1_0
{

//! Base of the capability interfaces (core, build, runtime) that IPluginV3 hands out.
class IPluginCapability : public IVersionedInterface
{
};

class IPluginResource;

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

class IPluginV3 : public IVersionedInterface
{
public:
    InterfaceInfo getInterfaceInfo() const noexcept override
    {
        return InterfaceInfo{"PLUGIN", 1, 0};
    }

    //! The object implementing `type` (nullptr if the plugin has no such capability).
    virtual IPluginCapability* getCapabilityInterface(PluginCapabilityType type) noexcept = 0;

    //! A fully initialised copy, independent of this object; nullptr on failure.
    virtual IPluginV3* clone() noexcept = 0;
};

} // namespace v_1_0

using IPluginCapability = v_1_0::IPluginCapability;
using IPluginResource = v_1_0::IPluginResource;
using IPluginCreatorInterface = v_1_0::IPluginCreatorInterface;
using IPluginV3 = v_1_0::IPluginV3;

} // namespace nvinfer1
