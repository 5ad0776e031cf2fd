/*
 * TensorRT stand-in (tests only; see NvInferVersion.h): the plugin registry, as TensorRT 11 declares
 * it (libnvinfer implements it; the test host plays libnvinfer). Virtual functions in the documented
 * order. Real headers take precedence.
 */
#pragma once

#include "NvInferPluginBase.h"

namespace nvinfer1
{

class IPluginRegistry
{
public:
    using PluginLibraryHandle = void*;

    IPluginRegistry() = default;
    IPluginRegistry(IPluginRegistry const&) = delete;
    IPluginRegistry(IPluginRegistry&&) = delete;
    IPluginRegistry& operator=(IPluginRegistry const&) & = delete;
    IPluginRegistry& operator=(IPluginRegistry&&) & = delete;

protected:
    virtual ~IPluginRegistry() noexcept = 0;

public:
    virtual void setErrorRecorder(IErrorRecorder* const recorder) noexcept = 0;
    virtual IErrorRecorder* getErrorRecorder() const noexcept = 0;
    virtual bool isParentSearchEnabled() const = 0;
    virtual void setParentSearchEnabled(bool const enabled) = 0;
    //! Loads a library that exports getCreators (and setLoggerFinder) and registers its creators;
    //! nullptr if it cannot be loaded or one of its creators is already registered.
    virtual PluginLibraryHandle loadLibrary(AsciiChar const* pluginPath) noexcept = 0;
    virtual void deregisterLibrary(PluginLibraryHandle handle) noexcept = 0;
    //! False if a creator of the same name, version and namespace is already registered.
    virtual bool registerCreator(IPluginCreatorInterface& creator, AsciiChar const* const pluginNamespace) noexcept = 0;
    virtual IPluginCreatorInterface* const* getAllCreators(int32_t* const numCreators) const noexcept = 0;
    virtual IPluginCreatorInterface* getCreator(AsciiChar const* const pluginName, AsciiChar const* const pluginVersion,
        AsciiChar const* const pluginNamespace = "") noexcept = 0;
    virtual bool deregisterCreator(IPluginCreatorInterface const& creator) noexcept = 0;
    virtual IPluginResource* acquirePluginResource(AsciiChar const* key, IPluginResource* resource) noexcept = 0;
    virtual int32_t releasePluginResource(AsciiChar const* key) noexcept = 0;
    virtual IPluginCreatorInterface* const* getAllCreatorsRecursive(int32_t* const numCreators) noexcept = 0;
};

inline IPluginRegistry::~IPluginRegistry() noexcept = default;

} // namespace nvinfer1
