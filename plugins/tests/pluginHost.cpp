// The TensorRT side of the plugin test host (see pluginHost.h), and the two functions of libnvinfer
// that a self-registering plugin library calls: getPluginRegistry() and getLogger().
#include "pluginHost.h"

#include <dlfcn.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <limits>

using namespace nvinfer1;

namespace host
{
namespace
{
thread_local ILogger* tCallerLogger{nullptr};
std::atomic<ILogger*> gGlobalLogger{nullptr};

//! The registry's own complaints go where TensorRT's would: the global logger.
void logRegistryError(std::string const& message)
{
    if (ILogger* logger = gGlobalLogger.load())
    {
        logger->log(Severity::kERROR, ("plugin registry: " + message).c_str());
    }
}

std::string orEmpty(char const* text)
{
    return text != nullptr ? text : "";
}
} // namespace

// --- loggers -------------------------------------------------------------------------------------

void CapturingLogger::log(Severity severity, AsciiChar const* message) noexcept
{
    OutOfMemory const memoryForTheApplication(false);
    std::lock_guard<std::mutex> lock(mMutex);
    mMessages.emplace_back(severity, orEmpty(message));
}

std::vector<std::string> CapturingLogger::errors() const
{
    std::lock_guard<std::mutex> lock(mMutex);
    std::vector<std::string> out;
    for (auto const& [severity, message] : mMessages)
    {
        if (severity == Severity::kERROR || severity == Severity::kINTERNAL_ERROR)
        {
            out.push_back(message);
        }
    }
    return out;
}

ILogger* HostLoggerFinder::findLogger()
{
    return tCallerLogger;
}

CallerLogger::CallerLogger(ILogger& logger)
    : mPrevious(tCallerLogger)
{
    tCallerLogger = &logger;
}

CallerLogger::~CallerLogger()
{
    tCallerLogger = mPrevious;
}

void setGlobalLogger(ILogger* logger)
{
    gGlobalLogger.store(logger);
}

// --- dimension expressions -----------------------------------------------------------------------

HostDimensionExpr::HostDimensionExpr()
    : mImplObject(*this)
{
    mImpl = &mImplObject;
}

std::unique_ptr<HostDimensionExpr> HostDimensionExpr::constant(int64_t value)
{
    std::unique_ptr<HostDimensionExpr> expr(new HostDimensionExpr());
    expr->mConstant = value;
    return expr;
}

std::unique_ptr<HostDimensionExpr> HostDimensionExpr::symbol(std::string name)
{
    std::unique_ptr<HostDimensionExpr> expr(new HostDimensionExpr());
    expr->mSymbol = std::move(name);
    return expr;
}

std::unique_ptr<HostDimensionExpr> HostDimensionExpr::operation(
    DimensionOperation op, HostDimensionExpr const& first, HostDimensionExpr const& second)
{
    std::unique_ptr<HostDimensionExpr> expr(new HostDimensionExpr());
    expr->mOp = op;
    expr->mFirst = &first;
    expr->mSecond = &second;
    if (first.mConstant && second.mConstant)
    {
        expr->mConstant = expr->evaluate({});
    }
    return expr;
}

std::optional<int64_t> HostDimensionExpr::evaluate(Symbols const& symbols) const
{
    if (mConstant)
    {
        return mConstant;
    }
    if (mFirst == nullptr)
    {
        auto const it = symbols.find(mSymbol);
        return it != symbols.end() ? std::optional<int64_t>(it->second) : std::nullopt;
    }
    std::optional<int64_t> const a = mFirst->evaluate(symbols);
    std::optional<int64_t> const b = mSecond->evaluate(symbols);
    if (!a || !b)
    {
        return std::nullopt;
    }
    switch (mOp)
    {
    case DimensionOperation::kSUM: return *a + *b;
    case DimensionOperation::kPROD: return *a * *b;
    case DimensionOperation::kMAX: return std::max(*a, *b);
    case DimensionOperation::kMIN: return std::min(*a, *b);
    case DimensionOperation::kSUB: return *a - *b;
    case DimensionOperation::kEQUAL: return *a == *b ? 1 : 0;
    case DimensionOperation::kLESS: return *a < *b ? 1 : 0;
    case DimensionOperation::kFLOOR_DIV:
    case DimensionOperation::kCEIL_DIV:
    {
        if (*b == 0)
        {
            return std::nullopt;
        }
        int64_t const quotient = *a / *b; // C++ truncates toward zero; TensorRT's divisions round down / up
        bool const inexact = quotient * *b != *a;
        bool const negative = (*a < 0) != (*b < 0);
        if (mOp == DimensionOperation::kFLOOR_DIV)
        {
            return inexact && negative ? quotient - 1 : quotient;
        }
        return inexact && !negative ? quotient + 1 : quotient;
    }
    }
    return std::nullopt;
}

bool HostDimensionExpr::Impl::isConstant() const
{
    return mExpr.mConstant.has_value();
}

int64_t HostDimensionExpr::Impl::getConstantValue() const
{
    return mExpr.mConstant.value_or(std::numeric_limits<int64_t>::min());
}

bool HostDimensionExpr::Impl::isSizeTensor() const
{
    return false;
}

HostExprBuilder::HostExprBuilder()
    : mImplObject(*this)
{
    mImpl = &mImplObject;
}

HostDimensionExpr const* HostExprBuilder::keep(std::unique_ptr<HostDimensionExpr> expr)
{
    mExprs.push_back(std::move(expr));
    return mExprs.back().get();
}

HostDimensionExpr const* HostExprBuilder::symbol(std::string name)
{
    return keep(HostDimensionExpr::symbol(std::move(name)));
}

HostDimensionExpr const* HostExprBuilder::known(int64_t value)
{
    return keep(HostDimensionExpr::constant(value));
}

IDimensionExpr const* HostExprBuilder::Impl::constant(int64_t value)
{
    return mBuilder.keep(HostDimensionExpr::constant(value));
}

IDimensionExpr const* HostExprBuilder::Impl::operation(
    DimensionOperation op, IDimensionExpr const& first, IDimensionExpr const& second)
{
    if (static_cast<int32_t>(op) < 0 || static_cast<int32_t>(op) >= EnumMax<DimensionOperation>())
    {
        ++mBuilder.mUnexpectedCalls;
        return nullptr;
    }
    // Every expression in this process comes from this host, as every one in TensorRT comes from TensorRT.
    return mBuilder.keep(HostDimensionExpr::operation(op, static_cast<HostDimensionExpr const&>(first),
        static_cast<HostDimensionExpr const&>(second)));
}

IDimensionExpr const* HostExprBuilder::Impl::declareSizeTensor(
    int32_t /*outputIndex*/, IDimensionExpr const& /*opt*/, IDimensionExpr const& /*upper*/)
{
    ++mBuilder.mUnexpectedCalls; // ReweightArgmax's output shape follows from its attributes alone
    return nullptr;
}

// --- plugin registry -----------------------------------------------------------------------------

bool isInterface(IVersionedInterface const* object, char const* kind)
{
    if (object == nullptr)
    {
        return false;
    }
    InterfaceInfo const info = object->getInterfaceInfo();
    return info.kind != nullptr && std::strcmp(info.kind, kind) == 0 && info.major == 1;
}

IPluginCreatorV3One* asCreatorV3One(IPluginCreatorInterface* creator)
{
    return isInterface(creator, "PLUGIN CREATOR_V3ONE") ? static_cast<IPluginCreatorV3One*>(creator) : nullptr;
}

void HostPluginRegistry::setErrorRecorder(IErrorRecorder* const recorder) noexcept
{
    mErrorRecorder = recorder;
}

IErrorRecorder* HostPluginRegistry::getErrorRecorder() const noexcept
{
    return mErrorRecorder;
}

bool HostPluginRegistry::isParentSearchEnabled() const
{
    return mParentSearch;
}

void HostPluginRegistry::setParentSearchEnabled(bool const enabled)
{
    mParentSearch = enabled;
}

bool HostPluginRegistry::registerCreator(
    IPluginCreatorInterface& creator, AsciiChar const* const pluginNamespace) noexcept
{
    IPluginCreatorV3One* const v3 = asCreatorV3One(&creator);
    if (v3 == nullptr)
    {
        logRegistryError("only IPluginCreatorV3One creators are supported by this host");
        return false;
    }
    Entry entry{&creator, orEmpty(v3->getPluginName()), orEmpty(v3->getPluginVersion()), orEmpty(pluginNamespace)};
    std::lock_guard<std::mutex> lock(mMutex);
    for (Entry const& e : mEntries)
    {
        if (e.name == entry.name && e.version == entry.version && e.pluginNamespace == entry.pluginNamespace)
        {
            logRegistryError("creator " + entry.pluginNamespace + "::" + entry.name + " version " + entry.version
                + " is already registered");
            return false;
        }
    }
    mEntries.push_back(std::move(entry));
    refreshCreatorList();
    return true;
}

bool HostPluginRegistry::deregisterCreator(IPluginCreatorInterface const& creator) noexcept
{
    std::lock_guard<std::mutex> lock(mMutex);
    auto const it
        = std::find_if(mEntries.begin(), mEntries.end(), [&](Entry const& e) { return e.creator == &creator; });
    if (it == mEntries.end())
    {
        return false;
    }
    mEntries.erase(it);
    refreshCreatorList();
    return true;
}

void HostPluginRegistry::refreshCreatorList()
{
    mCreatorList.clear();
    for (Entry const& e : mEntries)
    {
        mCreatorList.push_back(e.creator);
    }
}

IPluginCreatorInterface* const* HostPluginRegistry::getAllCreators(int32_t* const numCreators) const noexcept
{
    std::lock_guard<std::mutex> lock(mMutex);
    *numCreators = static_cast<int32_t>(mCreatorList.size());
    return mCreatorList.data();
}

IPluginCreatorInterface* HostPluginRegistry::getCreator(AsciiChar const* const pluginName,
    AsciiChar const* const pluginVersion, AsciiChar const* const pluginNamespace) noexcept
{
    std::lock_guard<std::mutex> lock(mMutex);
    for (Entry const& e : mEntries)
    {
        if (e.name == orEmpty(pluginName) && e.version == orEmpty(pluginVersion)
            && e.pluginNamespace == orEmpty(pluginNamespace))
        {
            return e.creator;
        }
    }
    return nullptr;
}

IPluginRegistry::PluginLibraryHandle HostPluginRegistry::loadLibrary(AsciiChar const* pluginPath) noexcept
{
    void* const handle = dlopen(pluginPath, RTLD_LAZY | RTLD_LOCAL);
    if (handle == nullptr)
    {
        logRegistryError("cannot load " + orEmpty(pluginPath) + ": " + orEmpty(dlerror()));
        return nullptr;
    }
    auto const getCreators = reinterpret_cast<GetCreatorsFunction>(dlsym(handle, "getCreators"));
    auto const setLoggerFinder = reinterpret_cast<SetLoggerFinderFunction>(dlsym(handle, "setLoggerFinder"));
    if (getCreators == nullptr || setLoggerFinder == nullptr)
    {
        logRegistryError(orEmpty(pluginPath) + " does not export getCreators and setLoggerFinder");
        dlclose(handle);
        return nullptr;
    }
    setLoggerFinder(&mFinder);
    int32_t count = 0;
    IPluginCreatorInterface* const* const creators = getCreators(count);
    Library library{handle, {}};
    for (int32_t i = 0; i < count; ++i)
    {
        IPluginCreatorV3One* const v3 = asCreatorV3One(creators[i]);
        if (v3 == nullptr || !registerCreator(*creators[i], v3->getPluginNamespace()))
        {
            // TensorRT: the call fails if any of the library's plugins is already registered.
            for (IPluginCreatorInterface* registered : library.creators)
            {
                deregisterCreator(*registered);
            }
            dlclose(handle);
            return nullptr;
        }
        library.creators.push_back(creators[i]);
    }
    std::lock_guard<std::mutex> lock(mMutex);
    mLibraries.push_back(std::move(library));
    return handle;
}

void HostPluginRegistry::deregisterLibrary(PluginLibraryHandle handle) noexcept
{
    std::vector<IPluginCreatorInterface*> creators;
    {
        std::lock_guard<std::mutex> lock(mMutex);
        auto const it = std::find_if(
            mLibraries.begin(), mLibraries.end(), [&](Library const& library) { return library.handle == handle; });
        if (it == mLibraries.end())
        {
            logRegistryError("deregisterLibrary: unknown handle");
            return;
        }
        creators = it->creators;
        mLibraries.erase(it);
    }
    for (IPluginCreatorInterface* creator : creators)
    {
        deregisterCreator(*creator);
    }
    dlclose(handle);
}

IPluginResource* HostPluginRegistry::acquirePluginResource(
    AsciiChar const* /*key*/, IPluginResource* /*resource*/) noexcept
{
    logRegistryError("plugin resources are not provided by this host");
    return nullptr;
}

int32_t HostPluginRegistry::releasePluginResource(AsciiChar const* /*key*/) noexcept
{
    logRegistryError("plugin resources are not provided by this host");
    return -1;
}

#if NV_TENSORRT_VERSION >= NV_TENSORRT_VERSION_INT(10, 10, 0)
IPluginCreatorInterface* const* HostPluginRegistry::getAllCreatorsRecursive(int32_t* const numCreators) noexcept
{
    return getAllCreators(numCreators); // this registry has no parent
}
#endif

#if NV_TENSORRT_MAJOR < 11
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
bool HostPluginRegistry::registerCreator(
    IPluginCreator& /*creator*/, AsciiChar const* const /*pluginNamespace*/) noexcept
{
    logRegistryError("IPluginCreator (V2) creators are not supported by this host");
    return false;
}

IPluginCreator* const* HostPluginRegistry::getPluginCreatorList(int32_t* const numCreators) const noexcept
{
    *numCreators = 0;
    return nullptr;
}

IPluginCreator* HostPluginRegistry::getPluginCreator(AsciiChar const* const /*pluginName*/,
    AsciiChar const* const /*pluginVersion*/, AsciiChar const* const /*pluginNamespace*/) noexcept
{
    return nullptr;
}

bool HostPluginRegistry::deregisterCreator(IPluginCreator const& /*creator*/) noexcept
{
    return false;
}
#pragma GCC diagnostic pop
#endif

int32_t HostPluginRegistry::size() const
{
    std::lock_guard<std::mutex> lock(mMutex);
    return static_cast<int32_t>(mEntries.size());
}

HostLoggerFinder& loggerFinder()
{
    static HostLoggerFinder finder;
    return finder;
}

HostPluginRegistry& registry()
{
    static HostPluginRegistry instance(loggerFinder());
    return instance;
}

} // namespace host

// libnvinfer's entry points, exported by the test executable (ENABLE_EXPORTS) so that the
// self-registering plugin library finds them when it is loaded.
extern "C" IPluginRegistry* getPluginRegistry() noexcept
{
    return &host::registry();
}

extern "C" ILogger* getLogger() noexcept
{
    return host::gGlobalLogger.load();
}
