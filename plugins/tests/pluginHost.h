/*
 * The TensorRT side of the plugin test host: what libnvinfer and an application provide to a
 * plugin library, implemented after TensorRT's documented contracts so that pluginHostTest.cpp can
 * drive the plugin through the IPluginV3 lifecycle without TensorRT. Compiles against the real
 * TensorRT headers (10.x, 11.x) and against the stand-in in tensorrtStandin/.
 */
#pragma once

#include "NvInferRuntime.h"

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace host
{

using Severity = nvinfer1::ILogger::Severity;

//! For its lifetime, operator new on this thread throws std::bad_alloc (pluginHostMemory.cpp): memory
//! runs out while TensorRT calls the plugin. `OutOfMemory(false)` gives memory back for its own
//! lifetime (the application's logger, which is not under test, allocates).
class OutOfMemory
{
public:
    explicit OutOfMemory(bool outOfMemory = true);
    ~OutOfMemory();
    OutOfMemory(OutOfMemory const&) = delete;
    OutOfMemory& operator=(OutOfMemory const&) = delete;

private:
    bool mPrevious;
};

//! An application's logger that keeps every message (thread-safe, as TensorRT requires).
class CapturingLogger final : public nvinfer1::ILogger
{
public:
    void log(Severity severity, nvinfer1::AsciiChar const* message) noexcept override;

    //! Messages of severity kERROR (or worse) so far.
    std::vector<std::string> errors() const;

private:
    mutable std::mutex mMutex;
    std::vector<std::pair<Severity, std::string>> mMessages;
};

//! TensorRT's ILoggerFinder: findLogger() returns the logger of the "engine" that is calling the
//! plugin on this thread (see CallerLogger), valid only while that engine calls.
class HostLoggerFinder final : public nvinfer1::ILoggerFinder
{
public:
    nvinfer1::ILogger* findLogger() override;
};

//! For its lifetime, plugin calls made on this thread come from an engine whose logger is `logger`.
class CallerLogger
{
public:
    explicit CallerLogger(nvinfer1::ILogger& logger);
    ~CallerLogger();
    CallerLogger(CallerLogger const&) = delete;
    CallerLogger& operator=(CallerLogger const&) = delete;

private:
    nvinfer1::ILogger* mPrevious;
};

//! What getLogger() (libnvinfer's global logger, played by this host) returns from now on.
void setGlobalLogger(nvinfer1::ILogger* logger);

//! Values for the extents known only when the engine runs (named symbols), e.g. {"N", 2}.
using Symbols = std::map<std::string, int64_t>;

//! A dimension expression as this host's builder makes it: a constant, a named run-time extent, or
//! an operation on two expressions (folded to a constant when both operands are constants).
class HostDimensionExpr final : public nvinfer1::IDimensionExpr
{
public:
    static std::unique_ptr<HostDimensionExpr> constant(int64_t value);
    static std::unique_ptr<HostDimensionExpr> symbol(std::string name);
    static std::unique_ptr<HostDimensionExpr> operation(
        nvinfer1::DimensionOperation op, HostDimensionExpr const& first, HostDimensionExpr const& second);
    ~HostDimensionExpr() noexcept override = default;

    //! The value for the given run-time extents; nothing if a symbol is unbound or a division by zero.
    std::optional<int64_t> evaluate(Symbols const& symbols) const;

private:
    //! The implementation the IDimensionExpr wrapper forwards to (libnvinfer's part).
    class Impl final : public nvinfer1::apiv::VDimensionExpr
    {
    public:
        explicit Impl(HostDimensionExpr const& expr)
            : mExpr(expr)
        {
        }
        bool isConstant() const override;
        int64_t getConstantValue() const override;
        bool isSizeTensor() const override;

    private:
        HostDimensionExpr const& mExpr;
    };

    HostDimensionExpr();

    Impl mImplObject;
    std::optional<int64_t> mConstant;
    std::string mSymbol;
    nvinfer1::DimensionOperation mOp{};
    HostDimensionExpr const* mFirst{nullptr};
    HostDimensionExpr const* mSecond{nullptr};
};

//! TensorRT's IExprBuilder for one getOutputShapes call: it owns every expression it makes (the
//! plugin's outputs included), so they die with it, as TensorRT documents.
class HostExprBuilder final : public nvinfer1::IExprBuilder
{
public:
    HostExprBuilder();
    ~HostExprBuilder() noexcept override = default;

    //! An input extent that is only known at run time.
    HostDimensionExpr const* symbol(std::string name);
    //! An input extent known when the engine is built.
    HostDimensionExpr const* known(int64_t value);
    //! Calls the plugin made that this host does not expect from it (declareSizeTensor).
    int32_t unexpectedCalls() const
    {
        return mUnexpectedCalls;
    }

private:
    class Impl final : public nvinfer1::apiv::VExprBuilder
    {
    public:
        explicit Impl(HostExprBuilder& builder)
            : mBuilder(builder)
        {
        }
        nvinfer1::IDimensionExpr const* constant(int64_t value) override;
        nvinfer1::IDimensionExpr const* operation(nvinfer1::DimensionOperation op,
            nvinfer1::IDimensionExpr const& first, nvinfer1::IDimensionExpr const& second) override;
        nvinfer1::IDimensionExpr const* declareSizeTensor(
            int32_t outputIndex, nvinfer1::IDimensionExpr const& opt, nvinfer1::IDimensionExpr const& upper) override;

    private:
        HostExprBuilder& mBuilder;
    };

    HostDimensionExpr const* keep(std::unique_ptr<HostDimensionExpr> expr);

    Impl mImplObject;
    std::vector<std::unique_ptr<HostDimensionExpr>> mExprs;
    int32_t mUnexpectedCalls{0};
};

//! An execution context's resources, as attachToContext receives them (this plugin needs none).
class HostResourceContext final : public nvinfer1::IPluginResourceContext
{
public:
    nvinfer1::IGpuAllocator* getGpuAllocator() const noexcept override
    {
        return nullptr;
    }
    nvinfer1::IErrorRecorder* getErrorRecorder() const noexcept override
    {
        return nullptr;
    }
};

//! libnvinfer's plugin registry, as getPluginRegistry() returns it (V3 creators only): refuses a
//! second creator of the same name/version/namespace, and loads libraries the way
//! IPluginRegistry::loadLibrary does (getCreators + setLoggerFinder).
class HostPluginRegistry final : public nvinfer1::IPluginRegistry
{
public:
    explicit HostPluginRegistry(nvinfer1::ILoggerFinder& finder)
        : mFinder(finder)
    {
    }
    ~HostPluginRegistry() noexcept override = default;

    void setErrorRecorder(nvinfer1::IErrorRecorder* const recorder) noexcept override;
    nvinfer1::IErrorRecorder* getErrorRecorder() const noexcept override;
    bool isParentSearchEnabled() const override;
    void setParentSearchEnabled(bool const enabled) override;
    PluginLibraryHandle loadLibrary(nvinfer1::AsciiChar const* pluginPath) noexcept override;
    void deregisterLibrary(PluginLibraryHandle handle) noexcept override;
    bool registerCreator(nvinfer1::IPluginCreatorInterface& creator,
        nvinfer1::AsciiChar const* const pluginNamespace) noexcept override;
    nvinfer1::IPluginCreatorInterface* const* getAllCreators(int32_t* const numCreators) const noexcept override;
    nvinfer1::IPluginCreatorInterface* getCreator(nvinfer1::AsciiChar const* const pluginName,
        nvinfer1::AsciiChar const* const pluginVersion,
        nvinfer1::AsciiChar const* const pluginNamespace = "") noexcept override;
    bool deregisterCreator(nvinfer1::IPluginCreatorInterface const& creator) noexcept override;
    nvinfer1::IPluginResource* acquirePluginResource(
        nvinfer1::AsciiChar const* key, nvinfer1::IPluginResource* resource) noexcept override;
    int32_t releasePluginResource(nvinfer1::AsciiChar const* key) noexcept override;
#if NV_TENSORRT_VERSION >= NV_TENSORRT_VERSION_INT(10, 10, 0) // added in TensorRT 10.10
    nvinfer1::IPluginCreatorInterface* const* getAllCreatorsRecursive(int32_t* const numCreators) noexcept override;
#endif
#if NV_TENSORRT_MAJOR < 11 // IPluginCreator (V2) entry points, removed in TensorRT 11: this host has no V2 creators
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
    bool registerCreator(
        nvinfer1::IPluginCreator& creator, nvinfer1::AsciiChar const* const pluginNamespace) noexcept override;
    nvinfer1::IPluginCreator* const* getPluginCreatorList(int32_t* const numCreators) const noexcept override;
    nvinfer1::IPluginCreator* getPluginCreator(nvinfer1::AsciiChar const* const pluginName,
        nvinfer1::AsciiChar const* const pluginVersion,
        nvinfer1::AsciiChar const* const pluginNamespace = "") noexcept override;
    bool deregisterCreator(nvinfer1::IPluginCreator const& creator) noexcept override;
#pragma GCC diagnostic pop
#endif

    //! The number of creators registered now.
    int32_t size() const;

private:
    struct Entry
    {
        nvinfer1::IPluginCreatorInterface* creator;
        std::string name;
        std::string version;
        std::string pluginNamespace;
    };
    struct Library
    {
        void* handle;
        std::vector<nvinfer1::IPluginCreatorInterface*> creators;
    };

    void refreshCreatorList();

    nvinfer1::ILoggerFinder& mFinder;
    mutable std::mutex mMutex;
    std::vector<Entry> mEntries;
    std::vector<nvinfer1::IPluginCreatorInterface*> mCreatorList;
    std::vector<Library> mLibraries;
    nvinfer1::IErrorRecorder* mErrorRecorder{nullptr};
    bool mParentSearch{true};
};

//! The registry behind getPluginRegistry(), with its logger finder.
HostPluginRegistry& registry();
HostLoggerFinder& loggerFinder();

//! Whether `object` says (getInterfaceInfo) it implements version 1 of the interface `kind`: what
//! TensorRT checks before it casts a creator or a plugin capability to that interface.
bool isInterface(nvinfer1::IVersionedInterface const* object, char const* kind);

//! The V3One creator behind `creator`, or nullptr if it is another kind.
nvinfer1::IPluginCreatorV3One* asCreatorV3One(nvinfer1::IPluginCreatorInterface* creator);

//! A plugin library's entry points, as TensorRT's loader looks them up (samples/trtexec/README.md).
using GetCreatorsFunction = nvinfer1::IPluginCreatorInterface* const* (*) (int32_t&);
using SetLoggerFinderFunction = void (*)(nvinfer1::ILoggerFinder*);

} // namespace host
